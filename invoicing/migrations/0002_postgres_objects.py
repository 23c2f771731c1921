"""PostgreSQL-only objects: immutability triggers on issued documents, their lines and the
versioned profiles; the frozen-model trigger (see invoicing/pgsql.py). A no-op on SQLite."""

from django.db import migrations

from invoicing import pgsql


class Migration(migrations.Migration):
    dependencies = [("invoicing", "0001_initial")]

    operations = [migrations.RunPython(pgsql.install, pgsql.uninstall, elidable=False)]
