"""Prepared statements where they pay, and nowhere else (issue 20).

Django's psycopg backend turns psycopg's automatic preparation off (`prepare_threshold=None`),
so PostgreSQL parses and plans every ORM statement on every call. On the write paths that run
for every order and every Stripe event (ingest, processing, order create and deliver), a
statement text seen `PREPARE_THRESHOLD` times on a connection is better prepared: PostgreSQL
then uses a generic plan, and planning was most of its CPU per statement there (`bench
orders`: 3.8 -> 2.5 ms of PostgreSQL CPU per order).

A generic plan is also what makes preparation unsafe everywhere else: planned without the
parameters' values, a range or aggregate query can get a plan many times slower than the
custom one (the staff dashboard's order page, 14 -> 99 ms at 200,000 orders; the balance
sheet's recent postings, 38 ms a call). So preparation is on only inside `prepared_statements()`
(a context manager and decorator) around those write paths; every other statement is planned
per call, as Django does. The ledger's own write and read functions are prepared explicitly
(`prepare=True`, the connection's threshold raised for that statement alone by
`lift_threshold`: a function call's only plan is the function scan) and plan their statements
generically inside PL/pgSQL. Outside this scope, psycopg prepares nothing on a connection whose
`prepare_threshold` is None, `prepare=True` included.

Needs server-side binding (`DATABASES OPTIONS server_side_binding`, settings `DB_PREPARED`);
off behind PgBouncer in transaction mode (`DB_PGBOUNCER`), where nothing may outlive a
transaction, and on other databases.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from django.db import connection
from django.db.backends.base.base import BaseDatabaseWrapper

#: Runs of one statement text on a connection before it is prepared (psycopg's default).
PREPARE_THRESHOLD = 5


def preparing_enabled(db: BaseDatabaseWrapper | None = None) -> bool:
    """Does the connection (default: this thread's default one) bind on the server (then it can
    prepare)?"""
    db = connection if db is None else db
    return db.vendor == "postgresql" and bool(
        db.settings_dict.get("OPTIONS", {}).get("server_side_binding")
    )


@contextmanager
def prepared_statements() -> Iterator[None]:
    """Within: statements run often on this thread's connection are prepared (see above).
    Nests; restores the connection's setting on the way out."""
    if not preparing_enabled():
        yield
        return
    connection.ensure_connection()
    raw = connection.connection
    previous = raw.prepare_threshold  # type: ignore[union-attr]
    raw.prepare_threshold = PREPARE_THRESHOLD  # type: ignore[union-attr]
    try:
        yield
    finally:
        if connection.connection is raw:  # not if the connection was closed and replaced
            raw.prepare_threshold = previous  # type: ignore[union-attr]


def lift_threshold(db: BaseDatabaseWrapper) -> bool:
    """For one statement run with `prepare=True` outside `prepared_statements()`: psycopg
    prepares nothing on a connection whose threshold is None, `prepare=True` included, so it is
    raised (where preparing is on). True: the caller puts None back after the statement. For
    statements whose generic plan is as good as any (a function call, key lookups)."""
    raw = db.connection
    if raw.prepare_threshold is None and preparing_enabled(db):  # type: ignore[union-attr]
        raw.prepare_threshold = PREPARE_THRESHOLD  # type: ignore[union-attr]
        return True
    return False
