"""PostgreSQL triggers of the payouts app (see payouts/pgsql.py); nothing on SQLite."""

from django.db import migrations

from payouts import pgsql


class Migration(migrations.Migration):
    dependencies = [("payouts", "0001_initial")]

    operations = [migrations.RunPython(pgsql.install, pgsql.uninstall)]
