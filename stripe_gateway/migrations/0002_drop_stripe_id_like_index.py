"""Drop the inbox's `stripe_id varchar_pattern_ops` index, which nothing reads.

Django adds that second index to every unique `CharField` on PostgreSQL, for `LIKE 'x%'`
lookups the default collation's btree cannot serve. No query of the product filters the
inbox's `stripe_id` by prefix: the inbox is read by exact id (the unique index, which stays),
and the admin's search (`icontains`: `UPPER(...) LIKE '%x%'`) can use neither index. The index
was one of the nine every webhook delivery's INSERT updates. Only on PostgreSQL (no such index
elsewhere); the reverse builds it again.
"""

from django.db import migrations

TABLE = "marketplace_stripe_event"


def _index_name(schema_editor) -> str:
    # The name Django gave it (`<table>_stripe_id_<hash>_like`), computed the same way.
    return schema_editor._create_index_name(TABLE, ["stripe_id"], suffix="_like")


def forwards(apps, schema_editor) -> None:
    if schema_editor.connection.vendor != "postgresql":
        return
    schema_editor.execute(
        f"DROP INDEX IF EXISTS {schema_editor.quote_name(_index_name(schema_editor))}"
    )


def backwards(apps, schema_editor) -> None:
    if schema_editor.connection.vendor != "postgresql":
        return
    name = schema_editor.quote_name(_index_name(schema_editor))
    schema_editor.execute(
        f"CREATE INDEX IF NOT EXISTS {name} ON {TABLE} (stripe_id varchar_pattern_ops)"
    )


class Migration(migrations.Migration):
    dependencies = [("stripe_gateway", "0001_initial")]

    operations = [migrations.RunPython(forwards, backwards, elidable=False)]
