"""Re-install the PostgreSQL objects: `ledger_post` takes the required balances as numeric[]
(a generous overdraft bound plus a large credit can fall below the bigint range) and replaces
the bigint[] signature. A no-op on SQLite."""

from django.db import migrations

from ledger import pgsql


class Migration(migrations.Migration):
    dependencies = [("ledger", "0006_postgres_objects_generic_plans")]

    operations = [migrations.RunPython(pgsql.install, migrations.RunPython.noop, elidable=False)]
