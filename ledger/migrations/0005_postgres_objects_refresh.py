"""Re-install the PostgreSQL objects (ledger/pgsql.py is CREATE OR REPLACE throughout): the
write function creates accounts and writes the transaction, its queue row and its postings in
one statement each, and plans its statements once per connection (force_generic_plan).
A no-op on SQLite."""

from django.db import migrations

from ledger import pgsql


class Migration(migrations.Migration):
    dependencies = [("ledger", "0004_unsealed_without_fk")]

    operations = [migrations.RunPython(pgsql.install, migrations.RunPython.noop, elidable=False)]
