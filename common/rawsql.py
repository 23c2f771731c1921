"""Hot-path SQL without the ORM's per-query cost: a prepared statement, rows made into model
instances exactly as a queryset would.

For the few statements every webhook and order runs (claiming an inbox row, locking an order):
building a queryset costs several times the round trip, and Django's default client-side
binding makes PostgreSQL parse and plan the statement again on every call. Here the statement
is sent with server-side binding (inside `common.prepared.prepared_statements()`, which the
hot write paths run in, psycopg prepares it after a few uses on the connection; never behind
PgBouncer) and the row is turned into a
model instance with the fields' own converters (`from_db_value`), so the instance equals what
`Model.objects.get()` returns. Other databases go through Django's cursor unchanged.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, TypeVar

from django.db import DEFAULT_DB_ALIAS, connections
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.models import Field, Model

from common.prepared import lift_threshold

M = TypeVar("M", bound=Model)


def fetch_one(sql: str, params: Sequence[Any]) -> tuple[Any, ...] | None:
    """Run `sql` (placeholders `%s`) on the default connection and return its first row."""
    connection = connections[DEFAULT_DB_ALIAS]
    if connection.vendor != "postgresql":
        with connection.cursor() as cursor:
            cursor.execute(sql, params)
            return cursor.fetchone()
    import psycopg

    connection.ensure_connection()
    with connection.wrap_database_errors, psycopg.Cursor(connection.connection) as cursor:
        cursor.execute(sql, params)  # type: ignore[arg-type]
        return cursor.fetchone()


def fetch_all(
    sql: str, params: Sequence[Any], *, prepare: bool | None = None
) -> list[tuple[Any, ...]]:
    """Run `sql` (placeholders `%s`) on the default connection and return all its rows
    (`prepare`: None = after a few uses inside `prepared_statements()`, True = at once, also
    outside it, wherever preparing is on: only for a statement whose generic plan is as good
    as any)."""
    connection = connections[DEFAULT_DB_ALIAS]
    if connection.vendor != "postgresql":
        with connection.cursor() as cursor:
            cursor.execute(sql, params)
            return list(cursor.fetchall())
    import psycopg

    connection.ensure_connection()
    with connection.wrap_database_errors, psycopg.Cursor(connection.connection) as cursor:
        lift = prepare is True and lift_threshold(connection)
        try:
            cursor.execute(sql, params, prepare=prepare)  # type: ignore[arg-type]
        finally:
            if lift:
                connection.connection.prepare_threshold = None  # type: ignore[union-attr]
        return cursor.fetchall()


def execute(sql: str, params: Sequence[Any]) -> int:
    """Run a statement that returns no rows; returns the number of rows it changed."""
    connection = connections[DEFAULT_DB_ALIAS]
    if connection.vendor != "postgresql":
        with connection.cursor() as cursor:
            cursor.execute(sql, params)
            return cursor.rowcount
    import psycopg

    connection.ensure_connection()
    with connection.wrap_database_errors, psycopg.Cursor(connection.connection) as cursor:
        cursor.execute(sql, params)  # type: ignore[arg-type]
        return cursor.rowcount


def columns(model: type[Model], alias: str = "") -> tuple[list[Field[Any, Any]], str]:
    """The model's concrete fields and their quoted columns (`alias.col, ...`) in that order."""
    qn = connections[DEFAULT_DB_ALIAS].ops.quote_name
    fields: list[Field[Any, Any]] = list(model._meta.concrete_fields)  # type: ignore[arg-type]
    prefix = f"{alias}." if alias else ""
    return fields, ", ".join(f"{prefix}{qn(str(f.column))}" for f in fields)


_CONVERTERS: dict[tuple[str, tuple[Field[Any, Any], ...]], list[list[Any]]] = {}


def _converters(
    connection: BaseDatabaseWrapper, fields: Sequence[Field[Any, Any]]
) -> list[list[Any]]:
    key = (connection.vendor, tuple(fields))
    found = _CONVERTERS.get(key)
    if found is None:
        found = []
        for field in fields:
            column = field.get_col(field.model._meta.db_table)
            found.append(
                connection.ops.get_db_converters(column) + field.get_db_converters(connection)
            )
        _CONVERTERS[key] = found
    return found


def instance(model: type[M], fields: Sequence[Field[Any, Any]], values: Sequence[Any]) -> M:
    """A model instance from a row of `fields` (all its concrete fields, in order), each value
    passed through the backend's and the field's converters like a queryset does (JSON text ->
    dict, SQLite's integers -> bool, ...)."""
    connection = connections[DEFAULT_DB_ALIAS]
    converted = []
    for field, converters, value in zip(
        fields, _converters(connection, fields), values, strict=True
    ):
        for converter in converters:
            value = converter(value, field, connection)
        converted.append(value)
    return model.from_db(connection.alias, [f.attname for f in fields], converted)
