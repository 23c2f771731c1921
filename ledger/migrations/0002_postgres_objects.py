"""PostgreSQL-only objects: the one-round-trip write function, append-only triggers, the GIN
index on transaction metadata (see ledger/pgsql.py). A no-op on SQLite."""

from django.db import migrations

from ledger import pgsql


class Migration(migrations.Migration):
    dependencies = [("ledger", "0001_initial")]

    operations = [migrations.RunPython(pgsql.install, pgsql.uninstall, elidable=False)]
