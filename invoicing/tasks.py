"""Celery tasks of invoicing (thin: each calls one service). Beat runs the sweep and the
month-end pass (invoicing/apps.py); both are idempotent, so a replay or an overlap issues
nothing twice."""

from __future__ import annotations

from typing import Any

from celery import shared_task


@shared_task(acks_late=True)
def invoices_sweep() -> dict[str, Any]:
    from invoicing.services import invoices_sweep as sweep

    result = sweep()
    return {"issued": result.issued, "anomalies": len(result.anomalies)}


@shared_task(acks_late=True)
def invoices_month_end() -> dict[str, Any]:
    from invoicing.services import closed_periods_pending, invoices_issue_period

    issued: dict[str, int] = {}
    for period in closed_periods_pending():
        for label, n in invoices_issue_period(period=period).issued.items():
            issued[label] = issued.get(label, 0) + n
    return {"issued": issued}
