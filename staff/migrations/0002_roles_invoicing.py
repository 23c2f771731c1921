"""Roles again (staff/roles.py), now that invoicing's permissions exist: Support and Finance
read and download invoices."""

from django.db import migrations

from staff.migrations import _roles


class Migration(migrations.Migration):
    dependencies = [("staff", "0001_roles"), ("invoicing", "0002_postgres_objects")]

    operations = [migrations.RunPython(_roles.apply_roles, migrations.RunPython.noop)]
