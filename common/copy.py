"""PostgreSQL's COPY FROM STDIN, for the batched writes (payouts' scheduling and states,
invoicing's documents): many rows in one statement, without the Python per row that
`bulk_create` spends. PostgreSQL only; the callers keep their portable path elsewhere.

It runs on the default connection, inside the caller's transaction; errors are Django's
(`IntegrityError`, `DataError`, ...), as from any Django cursor."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from django.db import connection


def copy_rows(table: str, columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> int:
    """COPY `rows` (each a sequence of values in the order of `columns`, already adapted to
    the database: None is NULL, JSON columns as JSON text) into `table`. Identifiers are
    quoted. Returns how many rows were written."""
    qn = connection.ops.quote_name
    sql = f"COPY {qn(table)} ({', '.join(qn(c) for c in columns)}) FROM STDIN"
    written = 0
    with connection.cursor() as cursor, connection.wrap_database_errors:
        raw = cursor.cursor  # psycopg's own cursor: COPY is not in the DB-API
        with raw.copy(sql) as copy:
            for row in rows:
                copy.write_row(row)
                written += 1
    return written
