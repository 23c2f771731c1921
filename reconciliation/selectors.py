"""Reading reconciliation runs and items: summaries (JSON), item lists, CSV export."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from typing import Any

from django.db.models import QuerySet

from reconciliation.errors import RunNotFound
from reconciliation.matching import OUTCOME_LABELS, PROBLEMS, Outcome
from reconciliation.models import ReconciliationItem, ReconciliationRun

# The fields of a reconciliation item that leave the app, in order: the API's item (after its
# id) and the CSV export (after its run) are both made of exactly these.
ITEM_FIELDS = (
    "key",
    "stripe_object",
    "asset",
    "outcome",
    "previous_outcome",
    "source_type",
    "categories",
    "stripe_amount",
    "stripe_fee",
    "stripe_net",
    "ledger_net",
    "ledger_fee",
    "difference",
    "balance_transaction_count",
    "ledger_transaction_count",
    "balance_transactions",
    "ledger_transactions",
    "occurred_at",
    "suggested_action",
    "safe",
    "repair",
    "repair_status",
    "repair_note",
)

# How the CSV writes the fields that are not plain text: the repair (a JSON object) as its
# action, under the column `repair_action`.
_CSV_COLUMNS = {"repair": "repair_action"}
_CSV_VALUES: dict[str, Any] = {
    "stripe_object": lambda v: v or "",
    "previous_outcome": lambda v: v or "",
    "occurred_at": lambda v: v.isoformat() if v else "",
    "safe": lambda v: "yes" if v else "no",
    "repair": lambda v: (v or {}).get("action", ""),
}
CSV_FIELDS = ["run", *(_CSV_COLUMNS.get(f, f) for f in ITEM_FIELDS)]


def run_get(*, run_id: int) -> ReconciliationRun:
    run = ReconciliationRun.objects.filter(pk=run_id).first()
    if run is None:
        raise RunNotFound(f"Reconciliation run {run_id} does not exist.", extra={"run": run_id})
    return run


def runs_list() -> QuerySet[ReconciliationRun]:
    return ReconciliationRun.objects.order_by("-id")


def open_problems_count(*, run: ReconciliationRun) -> int:
    """Problem items whose repair has not been applied."""
    return (
        ReconciliationItem.objects.filter(run=run, outcome__in=[str(p) for p in PROBLEMS])
        .exclude(repair_status=ReconciliationItem.RepairStatus.APPLIED)
        .count()
    )


def items_list(
    *, run: ReconciliationRun, outcome: str | None = None, problems_only: bool = False
) -> QuerySet[ReconciliationItem]:
    items = ReconciliationItem.objects.filter(run=run)
    if outcome:
        items = items.filter(outcome=outcome)
    if problems_only:
        items = items.exclude(outcome__in=[Outcome.MATCHED, Outcome.AWAITING_STRIPE])
    return items.order_by("id")


def run_summary(*, run: ReconciliationRun) -> dict[str, Any]:
    """Everything about a run but its items, as JSON-ready data."""
    counts = {str(o): int(run.counts.get(str(o), 0)) for o in Outcome}
    safe_pending = ReconciliationItem.objects.filter(
        run=run, safe=True, repair_status=ReconciliationItem.RepairStatus.PENDING
    ).count()
    return {
        "id": run.pk,
        "window": {"start": run.window_start.isoformat(), "end": run.window_end.isoformat()},
        "status": run.status,
        "trigger": run.trigger,
        "started_at": run.started_at.isoformat(),
        "finished_at": run.finished_at.isoformat() if run.finished_at else None,
        "grace_seconds": run.grace_seconds,
        "match_seconds": run.match_seconds,
        "imported": run.imported,
        "items": sum(counts.values()),
        "counts": counts,
        "amounts": run.amounts,
        "problems": run.problems,
        "safe_repairs_pending": safe_pending,
        "repairs": run.repairs,
        "totals": run.totals,
        "changes": run.changes,
        "previous_run": run.previous_run_id,
        "error": run.error,
        "clean": run.status == ReconciliationRun.Status.SUCCEEDED
        and run.problems == 0
        and all(not t.get("unexplained") for t in (run.totals or {}).values()),
    }


def outcome_label(outcome: str) -> str:
    try:
        return OUTCOME_LABELS[Outcome(outcome)]
    except ValueError:
        return outcome


def _csv_row(run_id: int, item: ReconciliationItem) -> list[Any]:
    row: list[Any] = [run_id]
    for name in ITEM_FIELDS:
        value = getattr(item, name)
        shape = _CSV_VALUES.get(name)
        row.append(shape(value) if shape else value)
    return row


def items_csv_lines(
    *, run: ReconciliationRun, outcome: str | None = None, problems_only: bool = False
) -> Iterator[str]:
    """The run's items as CSV text, one line at a time (header first); constant memory."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)

    def line(values: list[Any]) -> str:
        buffer.seek(0)
        buffer.truncate()
        writer.writerow(values)
        return buffer.getvalue()

    yield line(CSV_FIELDS)
    items = items_list(run=run, outcome=outcome, problems_only=problems_only)
    for item in items.iterator(chunk_size=2000):
        yield line(_csv_row(run.pk, item))
