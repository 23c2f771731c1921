"""An expression index on the ledger's `metadata->>'stripe_object'` (PostgreSQL only).

The matcher looks ledger transactions up by the Stripe object they mirror; without this index a
nightly window of a few thousand objects would scan the whole transaction table. The ledger's
own GIN (jsonb_path_ops) index serves `metadata @> {...}` containment, not `->>` equality or
joins. Built CONCURRENTLY (the ledger table is hot), hence a non-atomic migration. A no-op on
SQLite.
"""

from django.db import migrations

INDEX = "reconciliation_ledger_tx_stripe_object"


def create(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    with schema_editor.connection.cursor() as cursor:
        # An interrupted CONCURRENTLY build leaves an invalid index behind: rebuild it.
        cursor.execute(
            "SELECT NOT i.indisvalid FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid "
            "WHERE c.relname = %s",
            [INDEX],
        )
        row = cursor.fetchone()
        if row and row[0]:
            cursor.execute(f"DROP INDEX CONCURRENTLY IF EXISTS {INDEX}")
        cursor.execute(
            f"CREATE INDEX CONCURRENTLY IF NOT EXISTS {INDEX} "
            "ON ledger_transaction ((metadata ->> 'stripe_object'))"
        )


def drop(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    with schema_editor.connection.cursor() as cursor:
        cursor.execute(f"DROP INDEX CONCURRENTLY IF EXISTS {INDEX}")


class Migration(migrations.Migration):
    atomic = False

    dependencies = [
        ("reconciliation", "0001_initial"),
        ("ledger", "0002_postgres_objects"),
    ]

    operations = [migrations.RunPython(create, drop, elidable=False)]
