from django.db import migrations

from audit import pgsql


class Migration(migrations.Migration):
    dependencies = [("audit", "0001_initial")]

    operations = [migrations.RunPython(pgsql.install, pgsql.uninstall)]
