"""The dashboard's finance actions that need more than one service call's guarantees.

`repairs_apply_once`: two people clicking "apply safe repairs" on one run at the same moment
(each with their own one-time token) must apply them once. The repairs themselves are
idempotent ledger writes (fixed references), but their counters and audit row are not: a
session-level PostgreSQL advisory lock per run lets one caller in, the other is told someone
else is applying them; afterwards nothing is pending, so a later click is refused too.
`reconciliation_rerun`: the same window again (a new run linked to the previous one)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from django.db import connection

from config.errors import ApplicationError
from reconciliation.matching import PROBLEMS
from reconciliation.models import ReconciliationItem, ReconciliationRun
from reconciliation.services import reconciliation_run, run_repairs_apply
from reconciliation.services.repairs import RepairReport

_LOCK_NAMESPACE = 0x5EC0  # pg_advisory_lock(int4, int4): (namespace, run id)


class RepairsBusy(ApplicationError):
    code = "repairs_busy"
    http_status = 409


class NothingToRepair(ApplicationError):
    code = "nothing_to_repair"
    http_status = 409


@contextmanager
def _run_lock(run_id: int) -> Iterator[bool]:
    if connection.vendor != "postgresql":
        yield True
        return
    key = run_id % 2**31
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_try_advisory_lock(%s, %s)", [_LOCK_NAMESPACE, key])
        got = bool(cursor.fetchone()[0])
    try:
        yield got
    finally:
        if got:
            with connection.cursor() as cursor:
                cursor.execute("SELECT pg_advisory_unlock(%s, %s)", [_LOCK_NAMESPACE, key])


def pending_repairs(*, run: ReconciliationRun, limit: int = 200) -> list[ReconciliationItem]:
    return list(
        ReconciliationItem.objects.filter(
            run=run,
            # safe repairs are only offered on problem items: the partial (run, outcome) index
            outcome__in=[str(p) for p in PROBLEMS],
            safe=True,
            repair_status=ReconciliationItem.RepairStatus.PENDING,
        ).order_by("id")[:limit]
    )


def repairs_apply_once(*, run_id: int, actor: Any) -> RepairReport:
    """Apply the run's pending safe repairs, once. Raises RepairsBusy (someone else is
    applying them now) or NothingToRepair (already applied: nothing pending)."""
    with _run_lock(run_id) as got:
        if not got:
            raise RepairsBusy(
                f"Someone else is applying run {run_id}'s repairs right now: nothing was done "
                "twice. Reload the run in a moment."
            )
        run = ReconciliationRun.objects.get(pk=run_id)
        if not pending_repairs(run=run, limit=1):
            raise NothingToRepair(
                f"Run {run_id} has no safe repair pending: they were already applied."
            )
        return run_repairs_apply(run=run, actor=actor)


def reconciliation_rerun(*, run_id: int, actor: Any) -> ReconciliationRun:
    """Reconcile the run's window again (calls Stripe; no transaction may be open)."""
    from audit.services import audit_record

    run = ReconciliationRun.objects.get(pk=run_id)
    new = reconciliation_run(
        window_start=run.window_start, window_end=run.window_end, trigger="staff"
    )
    audit_record(
        actor=actor,
        action="reconciliation.rerun",
        obj=new,
        data={"previous_run": run.pk, "problems": new.problems, "status": new.status},
    )
    return new
