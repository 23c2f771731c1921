"""The locks of invoicing, in one global order:

1. `OrderInvoicing` rows of the orders being documented, by order id (two issuers of the same
   order queue here, so the second finds the first's documents and issues nothing);
2. `NumberSeries` rows, by (series, year) — held until commit, which is what makes numbering
   gapless: the documents and the counter commit or roll back together.
"""

from __future__ import annotations

from collections.abc import Iterable

from invoicing.models import NumberSeries, OrderInvoicing


def order_invoicing_lock(order_ids: Iterable[int]) -> dict[int, OrderInvoicing]:
    rows = OrderInvoicing.objects.select_for_update().filter(order_id__in=sorted(set(order_ids)))
    return {row.order_id: row for row in rows.order_by("order_id")}


def series_lock(keys: Iterable[tuple[str, int]]) -> dict[tuple[str, int], NumberSeries]:
    """Create the missing (series, year) rows, then lock them all in (series, year) order."""
    wanted = sorted(set(keys))
    NumberSeries.objects.bulk_create(
        [NumberSeries(series=s, year=y) for s, y in wanted], ignore_conflicts=True
    )
    series = sorted({s for s, _ in wanted})
    years = sorted({y for _, y in wanted})
    # One statement; rows are locked in (series, year) order, the documented global order.
    rows = (
        NumberSeries.objects.select_for_update()
        .filter(series__in=series, year__in=years)
        .order_by("series", "year")
    )
    keep = set(wanted)
    return {(row.series, row.year): row for row in rows if (row.series, row.year) in keep}
