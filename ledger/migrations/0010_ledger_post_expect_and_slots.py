"""Re-install the PostgreSQL objects: `ledger_post` takes the balances a Numscript run read
(`p_key_expect`: checked under the same row locks, SQLSTATE LD003 when stale), claims the
writer's balance shard with a transaction-level advisory try-lock instead of taking the
connection's (`p_shards`), and reports a volume overflow only after every funds check. A
no-op on SQLite."""

from django.db import migrations

from ledger import pgsql


class Migration(migrations.Migration):
    dependencies = [("ledger", "0009_checkpoints")]

    operations = [migrations.RunPython(pgsql.install, migrations.RunPython.noop, elidable=False)]
