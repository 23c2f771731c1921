"""Reading and writing many invoicing rows per statement: the issuing hot path.

On PostgreSQL the statements run on a psycopg cursor with server-side binding (an id list is
one array parameter, `= ANY(%s)`, not thousands of quoted literals), results in binary, never
prepared (a generic plan for `= ANY($1)` guesses the array's size and can pick a scan of the
whole table; planning each statement costs well under a millisecond; PgBouncer-safe), and
documents and their lines are written with COPY under identifiers taken from the invoice
sequence beforehand (so credit notes can point at originals of the same batch in one pass).
Elsewhere (the demo's SQLite) the same SQL runs through Django's cursor with the array
expanded to an `IN (...)` list, and rows are written with `bulk_create`. Django's
`bulk_create` and client-side binding cost more Python per row than the database spends on
the whole batch (`bench invoicing`, README). `INVOICING_FAST_PATH = False` forces the portable
path on PostgreSQL (the tests run both).

Everything here runs inside the caller's transaction; errors are Django's (wrapped).
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

from django.db import connection
from django.utils.dateparse import parse_datetime

from common.copy import copy_rows
from invoicing import conf

# Values per statement. With PostgreSQL's default cost settings (random_page_cost 4) a few
# thousand lookups look dearer than one (parallel) scan of the whole table, which is ten
# times slower on a cached table: small chunks keep every statement on its index.
CHUNK = 1000
PORTABLE_CHUNK = 500  # SQLite's bound-variable limit is far above; keep statements small


def fast() -> bool:
    return connection.vendor == "postgresql" and bool(conf.get("INVOICING_FAST_PATH"))


@contextmanager
def _pg_cursor() -> Iterator[Any]:
    import psycopg

    connection.ensure_connection()
    with connection.wrap_database_errors, psycopg.Cursor(connection.connection) as cursor:
        yield cursor


def select_any(
    sql: str,
    values: Sequence[Any],
    params: Sequence[Any] = (),
    *,
    for_update: bool = False,
    chunk: int = CHUNK,
) -> list[tuple]:
    """Rows of `sql`, whose one `= ANY(%s)` takes `values` (chunked; further `params` after
    it). Order across chunks follows the chunks (so sorted values and an ORDER BY lock rows
    in that order across chunks too). `for_update` appends FOR UPDATE where supported."""
    out: list[tuple] = []
    values = list(values)
    if not values:
        return out
    if for_update and connection.features.has_select_for_update:
        sql += " FOR UPDATE"
    if fast():
        with _pg_cursor() as cursor:
            for start in range(0, len(values), chunk):
                part = values[start : start + chunk]
                cursor.execute(sql, [part, *params], binary=True, prepare=False)
                out += cursor.fetchall()
        return out
    with connection.cursor() as cursor:
        for start in range(0, len(values), PORTABLE_CHUNK):
            part = values[start : start + PORTABLE_CHUNK]
            expanded = sql.replace("= ANY(%s)", f"IN ({', '.join(['%s'] * len(part))})", 1)
            cursor.execute(expanded, [*part, *params])
            out += cursor.fetchall()
    return out


def as_datetime(value: Any) -> datetime:
    """A timestamp column read by raw SQL (SQLite returns text, in UTC, without an offset)."""
    if isinstance(value, datetime):
        parsed: datetime | None = value
    else:
        parsed = parse_datetime(str(value))
    if parsed is None:  # pragma: no cover - the column is NOT NULL and well-formed
        raise ValueError(f"not a timestamp: {value!r}")
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)


def execute(sql: str, params: Sequence[Any]) -> None:
    """One statement with array parameters (PostgreSQL fast path only)."""
    with _pg_cursor() as cursor:
        cursor.execute(sql, list(params), prepare=False)


def execute_any(sql: str, values: Sequence[Any]) -> None:
    """A write whose one `= ANY(%s)` takes `values` (on both paths, as `select_any`)."""
    values = list(values)
    if not values:
        return
    if fast():
        execute(sql, [values])
        return
    with connection.cursor() as cursor:
        for start in range(0, len(values), PORTABLE_CHUNK):
            chunk = values[start : start + PORTABLE_CHUNK]
            expanded = sql.replace("= ANY(%s)", f"IN ({', '.join(['%s'] * len(chunk))})", 1)
            cursor.execute(expanded, chunk)


INVOICE_COLUMNS = (
    "id",
    "key",
    "kind",
    "model",
    "series",
    "year",
    "number",
    "display_number",
    "issuer",
    "recipient",
    "customer_facing",
    "issuer_details",
    "recipient_details",
    "legal_mention",
    "order_id",
    "period",
    "credit_event",
    "original_id",
    "asset",
    "total_gross",
    "total_tax",
    "total_net",
    "ledger_transactions",
    "issued_at",
)
LINE_COLUMNS = (
    "invoice_id",
    "position",
    "order_id",
    "kind",
    "description",
    "gross",
    "tax_bps",
    "tax",
    "net",
    "account",
    "counter_account",
    "ledger_transaction_id",
    "original_position",
)
JSON_COLUMNS = ("issuer_details", "recipient_details", "ledger_transactions")


def invoice_ids(n: int) -> list[int]:
    """`n` fresh identifiers from the invoice table's sequence (PostgreSQL fast path)."""
    with _pg_cursor() as cursor:
        cursor.execute(
            "SELECT nextval(pg_get_serial_sequence('invoicing_invoice', 'id')) "
            "FROM generate_series(1, %s)",
            [n],
            prepare=False,
        )
        return [row[0] for row in cursor.fetchall()]


def documents_copy(invoices: Sequence[Sequence[Any]], lines: Sequence[Sequence[Any]]) -> None:
    """COPY invoice rows (INVOICE_COLUMNS, ids set, JSON columns as JSON text) and line rows
    (LINE_COLUMNS). PostgreSQL fast path only."""
    copy_rows("invoicing_invoice", INVOICE_COLUMNS, invoices)
    copy_rows("invoicing_invoiceline", LINE_COLUMNS, lines)


def int_list_json(values: Sequence[int]) -> str:
    return "[" + ",".join(map(str, values)) + "]"


def json_text(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def json_loads(text: str) -> Any:
    return json.loads(text)
