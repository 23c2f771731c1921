"""Re-install the PostgreSQL objects (ledger/pgsql.py is CREATE OR REPLACE throughout): the
write function now creates accounts set-based and writes runs of balance keys in one statement.
A no-op on SQLite."""

from django.db import migrations

from ledger import pgsql


class Migration(migrations.Migration):
    dependencies = [("ledger", "0004_unsealed_without_fk")]

    operations = [migrations.RunPython(pgsql.install, migrations.RunPython.noop, elidable=False)]
