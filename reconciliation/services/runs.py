"""A reconciliation run, start to finish: import, match, suggest, book fees, totals, changes.

`reconciliation_run(window_start=, window_end=)` always makes a NEW run. Running a window
again never rewrites an earlier run: the new one points at the latest earlier run of the same
window (`previous_run`) and its `changes` say which keys changed outcome, appeared or went.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Callable
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from django.db import connection
from django.utils import timezone

from reconciliation import conf
from reconciliation.errors import InvalidWindow
from reconciliation.models import ReconciliationItem, ReconciliationRun
from reconciliation.selectors import open_problems_count
from reconciliation.services.importing import balance_transactions_import, stripe_balance_fetch
from reconciliation.services.matching import match_run, run_aggregates
from reconciliation.services.repairs import fees_book
from reconciliation.services.suggestions import suggestions_enrich
from reconciliation.services.totals import totals_compute
from stripe_gateway.client import StripeGateway

logger = logging.getLogger(__name__)

# progress(stage, done, total, detail): stages "import", "match", "suggest", "fees", "totals"
Progress = Callable[[str, int, int | None, str], None]


def window_for_day(day: date) -> tuple[datetime, datetime]:
    """[day 00:00 UTC, next day 00:00 UTC)."""
    start = datetime.combine(day, time.min, tzinfo=UTC)
    return start, start + timedelta(days=1)


def window_validate(window_start: datetime, window_end: datetime) -> None:
    if timezone.is_naive(window_start) or timezone.is_naive(window_end):
        raise InvalidWindow("The window's start and end must carry a time zone.")
    if window_end <= window_start:
        raise InvalidWindow(
            f"The window is empty: {window_start.isoformat()} is not before "
            f"{window_end.isoformat()}.",
            extra={"start": window_start.isoformat(), "end": window_end.isoformat()},
        )


def reconciliation_run(
    *,
    window_start: datetime,
    window_end: datetime,
    trigger: str = "command",
    gateway: StripeGateway | None = None,
    import_from_stripe: bool = True,
    progress: Progress | None = None,
    now: datetime | None = None,
) -> ReconciliationRun:
    """Run a reconciliation of [window_start, window_end). Must be called with no transaction
    open (it calls Stripe). Raises InvalidWindow; any failure marks the run failed and is
    re-raised."""
    window_validate(window_start, window_end)

    def report(stage: str, done: int = 0, total: int | None = None, detail: str = "") -> None:
        if progress is not None:
            progress(stage, done, total, detail)

    previous = (
        ReconciliationRun.objects.filter(
            window_start=window_start,
            window_end=window_end,
            status=ReconciliationRun.Status.SUCCEEDED,
        )
        .order_by("-id")
        .first()
    )
    run = ReconciliationRun.objects.create(
        window_start=window_start,
        window_end=window_end,
        trigger=trigger,
        grace_seconds=int(conf.get("RECONCILIATION_GRACE_SECONDS")),
        previous_run=previous,
    )
    try:
        stripe_balance = None
        if import_from_stripe:
            span = max(1.0, (window_end - window_start).total_seconds())

            def imported(seen: int, created: int | None) -> None:
                # Stripe lists newest first: the share of the window already covered.
                covered = 0 if created is None else window_end.timestamp() - created
                report("import", int(min(span, max(0.0, covered))), int(span), f"{seen} imported")

            report("import", 0, int(span), "listing balance transactions")
            result = balance_transactions_import(
                window_start=window_start, window_end=window_end, gateway=gateway, progress=imported
            )
            run.imported = result.as_dict()
            report("import", int(span), int(span), f"{result.seen} imported")
            stripe_balance = stripe_balance_fetch(gateway=gateway)
            run.save(update_fields=["imported"])
        report("match", 0, None, "matching in the database")
        matched = match_run(run=run, now=now)
        run.match_seconds = round(matched.seconds, 3)
        report("match", matched.items, matched.items, f"{matched.items} items")
        report("suggest", 0, None, "looking up events and duplicates")
        suggestions_enrich(run=run, gateway=gateway)
        fees = None
        if conf.get("RECONCILIATION_BOOK_FEES"):
            report("fees", 0, None, "booking missing Stripe fees")
            fees = fees_book(run=run)
        run.counts, run.amounts = run_aggregates(run=run)
        report("totals", 0, None, "comparing balances")
        run.totals = totals_compute(run=run, stripe_balance=stripe_balance)
        run.changes = changes_compute(run=run)
        run.repairs = {
            "fees_booked": fees.applied if fees else 0,
            "fees_failed": fees.failed if fees else 0,
            "applied": fees.applied if fees else 0,
            "failed": fees.failed if fees else 0,
        }
        run.problems = open_problems_count(run=run)
        run.status = ReconciliationRun.Status.SUCCEEDED
    except Exception as exc:
        logger.exception("reconciliation run %s failed", run.pk)
        run.status = ReconciliationRun.Status.FAILED
        run.error = f"{exc.__class__.__name__}: {exc}"[:4000]
        run.finished_at = timezone.now()
        run.save()
        raise
    run.finished_at = timezone.now()
    run.save()
    return run


def changes_compute(*, run: ReconciliationRun) -> dict[str, Any]:
    """Compare with the previous run of the window, set-based: the counts of unchanged keys,
    of outcome transitions, of new keys and of keys gone; items whose outcome changed get
    their `previous_outcome`."""
    previous = run.previous_run
    if previous is None:
        return {"previous_run": None}
    table = ReconciliationItem._meta.db_table
    key = connection.ops.quote_name("key")
    same = f"p.{key} = c.{key} AND p.asset = c.asset"
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT p.outcome, c.outcome, COUNT(*) FROM {table} c JOIN {table} p ON {same} "
            "WHERE c.run_id = %s AND p.run_id = %s GROUP BY p.outcome, c.outcome",
            [run.pk, previous.pk],
        )
        transitions = cursor.fetchall()
        cursor.execute(
            f"SELECT c.outcome, COUNT(*) FROM {table} c WHERE c.run_id = %s AND NOT EXISTS "
            f"(SELECT 1 FROM {table} p WHERE p.run_id = %s AND {same}) GROUP BY c.outcome",
            [run.pk, previous.pk],
        )
        new = {outcome: int(n) for outcome, n in cursor.fetchall()}
        cursor.execute(
            f"SELECT p.outcome, COUNT(*) FROM {table} p WHERE p.run_id = %s AND NOT EXISTS "
            f"(SELECT 1 FROM {table} c WHERE c.run_id = %s AND {same}) GROUP BY p.outcome",
            [previous.pk, run.pk],
        )
        gone = {outcome: int(n) for outcome, n in cursor.fetchall()}
        changed_keys = any(before != after for before, after, _n in transitions)
        if changed_keys:
            cursor.execute(
                f"UPDATE {table} SET previous_outcome = (SELECT p.outcome FROM {table} p "
                f"WHERE p.run_id = %s AND p.{key} = {table}.{key} AND p.asset = {table}.asset) "
                f"WHERE run_id = %s AND outcome <> 'matched'",
                [previous.pk, run.pk],
            )
            cursor.execute(
                f"UPDATE {table} SET previous_outcome = (SELECT p.outcome FROM {table} p "
                f"WHERE p.run_id = %s AND p.outcome <> 'matched' AND p.{key} = {table}.{key} "
                f"AND p.asset = {table}.asset) WHERE run_id = %s AND outcome = 'matched'",
                [previous.pk, run.pk],
            )
            cursor.execute(
                f"UPDATE {table} SET previous_outcome = NULL "
                "WHERE run_id = %s AND previous_outcome = outcome",
                [run.pk],
            )
    unchanged = 0
    changed: dict[str, int] = defaultdict(int)
    for before, after, n in transitions:
        if before == after:
            unchanged += int(n)
        else:
            changed[f"{before} -> {after}"] += int(n)
    return {
        "previous_run": previous.pk,
        "unchanged": unchanged,
        "changed": dict(sorted(changed.items())),
        "new": dict(sorted(new.items())),
        "gone": dict(sorted(gone.items())),
        "identical": not changed and not new and not gone,
    }
