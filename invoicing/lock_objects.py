"""The locks of invoicing, in one global order:

1. `OrderInvoicing` rows of the orders being documented, by order id (two issuers of the same
   order queue here, so the second finds the first's documents and issues nothing);
2. `NumberSeries` rows, by (series, year) — held until commit, which is what makes numbering
   gapless: the documents and the counter commit or roll back together.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, NamedTuple

from invoicing.bulk import select_any
from invoicing.models import NumberSeries


class Decision(NamedTuple):
    """An order's locked `OrderInvoicing` row, as issuing reads it."""

    order_id: int
    model: str
    profile_id: int | None
    documented: bool


def order_invoicing_lock(order_ids: Iterable[int]) -> dict[int, Decision]:
    """Lock the orders' decisions, in order id order."""
    rows = select_any(
        "SELECT order_id, model, profile_id, documented FROM invoicing_orderinvoicing "
        "WHERE order_id = ANY(%s) ORDER BY order_id",
        sorted(set(order_ids)),
        for_update=True,
    )
    return {row[0]: Decision(row[0], row[1], row[2], bool(row[3])) for row in rows}


def series_lock(keys: Iterable[tuple[str, int]]) -> dict[tuple[str, int], list[Any]]:
    """Create the missing (series, year) rows, then lock them all in (series, year) order.
    Returns (series, year) -> [series, last_number, id], a counter the caller advances."""
    wanted = sorted(set(keys))
    series = sorted({s for s, _ in wanted})
    years = sorted({y for _, y in wanted})
    existing = set(
        NumberSeries.objects.filter(series__in=series, year__in=years).values_list("series", "year")
    )
    missing = [NumberSeries(series=s, year=y) for s, y in wanted if (s, y) not in existing]
    if missing:
        NumberSeries.objects.bulk_create(missing, ignore_conflicts=True)
    # One statement; rows are locked in (series, year) order, the documented global order.
    rows = (
        NumberSeries.objects.select_for_update()
        .filter(series__in=series, year__in=years)
        .order_by("series", "year")
        .values_list("series", "year", "last_number", "id")
    )
    keep = set(wanted)
    return {(s, y): [s, n, pk] for s, y, n, pk in rows if (s, y) in keep}
