"""Install `ledger_post_guarded`: `ledger_post` for a caller inside a transaction, its failure
rolled back in a subtransaction and returned as a row (no SAVEPOINT round trips). A no-op on
SQLite."""

from django.db import migrations

from ledger import pgsql


class Migration(migrations.Migration):
    dependencies = [("ledger", "0010_ledger_post_expect_and_slots")]

    operations = [migrations.RunPython(pgsql.install, migrations.RunPython.noop, elidable=False)]
