"""Roles again (staff/roles.py), now that invoicing's permissions exist (Support and Finance
read and download invoices) and the Stripe inbox belongs to stripe_gateway."""

from django.db import migrations

from staff.migrations import _roles


class Migration(migrations.Migration):
    dependencies = [
        ("staff", "0001_roles"),
        ("invoicing", "0002_postgres_objects"),
        ("marketplace", "0007_stripe_event_moved"),
        ("stripe_gateway", "0001_initial"),
    ]

    operations = [migrations.RunPython(_roles.apply_roles, migrations.RunPython.noop)]
