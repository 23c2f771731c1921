"""Re-install the PostgreSQL objects (payouts/pgsql.py): adds the payouts table's fillfactor."""

from django.db import migrations

from payouts import pgsql


class Migration(migrations.Migration):
    dependencies = [("payouts", "0004_drop_redundant_index")]

    operations = [migrations.RunPython(pgsql.install, migrations.RunPython.noop)]
