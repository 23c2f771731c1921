"""What the database holds, in a form two moments can be compared by: the tests that prove a
refused or failed request wrote nothing take one before and one after."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from django.apps import apps
from django.db import connection
from django.db.models import QuerySet

# The apps whose tables a request may write.
APPS = ("ledger", "marketplace", "payouts", "reconciliation", "audit", "invoicing", "knox")


def db_snapshot(
    app_labels: Iterable[str] = APPS, *, rows: Mapping[str, QuerySet[Any]] | None = None
) -> dict[str, Any]:
    """Every table's row count (of the apps `app_labels`) and the ledger's sums per asset, in
    one round trip; plus, for each name in `rows`, that query's rows (the columns a request
    could change without adding a row, such as a state)."""
    labels = set(app_labels)
    tables = sorted(
        m._meta.db_table
        for m in apps.get_models()
        if m._meta.app_label in labels and m._meta.managed and not m._meta.proxy
    )
    counts = ", ".join(f'(SELECT count(*) FROM "{t}")' for t in tables)
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT {counts}")
        row = cursor.fetchone()
        cursor.execute(
            "SELECT asset, sum(amount), count(*) FROM ledger_posting GROUP BY asset ORDER BY asset"
        )
        sums = cursor.fetchall()
        cursor.execute(
            "SELECT asset, sum(input), sum(output) FROM ledger_balance GROUP BY asset "
            "ORDER BY asset"
        )
        balances = cursor.fetchall()
    return {
        "counts": dict(zip(tables, row, strict=True)),
        "postings": sums,
        "balances": balances,
        "rows": {name: list(query) for name, query in (rows or {}).items()},
    }
