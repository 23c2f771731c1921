"""Writing many rows in one statement, for the batched steps (PostgreSQL fast paths, the
portable Django calls elsewhere). Django's `bulk_create` and `bulk_update` spend more time in
Python per row than the whole transaction spends in the database: at 10,000 payouts a pass
these two helpers are most of the difference."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from django.db import connection

from common.copy import copy_rows


def rows_insert(model: Any, rows: Sequence[Any]) -> None:
    """INSERT `rows` (unsaved instances). On PostgreSQL one COPY; an auto-increment primary
    key is left to the database and not set back on the instances."""
    if not rows:
        return
    if connection.vendor != "postgresql":
        model.objects.bulk_create(list(rows))
        return
    meta = model._meta
    fields = [
        f for f in meta.concrete_fields if not (f.primary_key and getattr(f, "db_returning", False))
    ]
    copy_rows(
        meta.db_table,
        [f.column for f in fields],
        (
            [f.get_db_prep_save(f.pre_save(obj, add=True), connection) for f in fields]
            for obj in rows
        ),
    )
    for obj in rows:  # as bulk_create leaves them: saved instances
        obj._state.adding = False
        obj._state.db = connection.alias


def rows_update(model: Any, rows: Sequence[Any], names: Sequence[str]) -> None:
    """Write each row's own values of `names` in one statement. On PostgreSQL an
    `UPDATE ... FROM (VALUES ...)`; Django's bulk_update (a CASE per column and row) costs
    more in Python than the whole transaction does in the database."""
    if not rows:
        return
    if connection.vendor != "postgresql":
        model.objects.bulk_update(list(rows), list(names))
        return
    meta = model._meta
    columns = [meta.get_field(name) for name in names]
    pk = meta.pk
    casts = [f"%s::{c.db_type(connection)}" for c in [pk, *columns]]
    row = "(" + ", ".join(casts) + ")"
    params: list[Any] = []
    for obj in rows:
        params += [c.get_db_prep_save(getattr(obj, c.attname), connection) for c in [pk, *columns]]
    qn = connection.ops.quote_name
    sets = ", ".join(f"{qn(c.column)} = v.{qn(c.column)}" for c in columns)
    names_sql = ", ".join(qn(c.column) for c in [pk, *columns])
    with connection.cursor() as cursor:
        cursor.execute(
            f"UPDATE {qn(meta.db_table)} AS t SET {sets} "
            f"FROM (VALUES {', '.join([row] * len(rows))}) AS v({names_sql}) "
            f"WHERE t.{qn(pk.column)} = v.{qn(pk.column)}",
            params,
        )
