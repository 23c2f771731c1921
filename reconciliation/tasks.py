"""Celery tasks of reconciliation: thin wrappers over `reconciliation.services`.

The nightly run has ONE entry point, `staff.finance_nightly` (staff/tasks.py, scheduled by
Celery beat as `reconciliation-nightly` in config/settings.py): it calls `nightly_run` and
`report_enqueue` from here and adds the invoicing check, which this app may not import
(reconciliation and invoicing sit side by side; staff is above both). A run that fails is
stored as `failed` with its error and its report still goes out; the next night's run does
not depend on it (each window is independent; re-run a day with `manage.py reconcile --date`).
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from typing import Any

from celery import shared_task
from django.utils import timezone

from reconciliation import conf
from reconciliation.delivery import report_send
from reconciliation.models import ReconciliationRun
from reconciliation.services import reconciliation_run, window_for_day

logger = logging.getLogger(__name__)


def nightly_run(*, trigger: str = "beat") -> ReconciliationRun:
    """Reconcile yesterday (UTC) and return the run, stored as succeeded or failed (a failed
    run is returned too: its report says so; the error is logged)."""
    yesterday = timezone.now().astimezone(UTC).date() - timedelta(days=1)
    start, end = window_for_day(yesterday)
    try:
        run = reconciliation_run(window_start=start, window_end=end, trigger=trigger)
    except Exception:
        failed = (
            ReconciliationRun.objects.filter(window_start=start, window_end=end, trigger=trigger)
            .order_by("-id")
            .first()
        )
        if failed is None:
            raise
        logger.exception("reconciliation run %s of %s failed", failed.pk, yesterday)
        return failed
    if run.problems:
        logger.error(
            "reconciliation run %s of %s: %s problem(s) need attention",
            run.pk,
            yesterday,
            run.problems,
        )
    return run


def report_enqueue(*, run_id: int, sections: list[dict[str, Any]] | None = None) -> None:
    """Queue the run's report e-mail. Never raises: a broker that is down must not fail the
    run (the run is stored; `manage.py reconcile_report <run>` sends it by hand)."""
    try:
        reconciliation_report_send.delay(run_id, sections or [])
    except Exception:
        logger.exception("reconciliation report of run %s could not be queued", run_id)


@shared_task(
    name="reconciliation.report_send",
    bind=True,
    ignore_result=True,
    max_retries=None,  # bounded below by RECONCILIATION_REPORT_RETRIES
)
def reconciliation_report_send(self: Any, run_id: int, sections: list[dict[str, Any]]) -> int:
    """Send a run's report; on any failure (SMTP down, timeout) retry with a growing delay,
    RECONCILIATION_REPORT_RETRIES times, then log an error. The run is never affected."""
    try:
        return report_send(run_id=run_id, sections=sections)
    except Exception as exc:
        retries = int(conf.get("RECONCILIATION_REPORT_RETRIES"))
        if self.request.retries >= retries:
            logger.error(
                "reconciliation report of run %s not sent after %s attempts: %s",
                run_id,
                retries + 1,
                exc,
            )
            return 0
        delay = min(600, 30 * 2**self.request.retries)
        logger.warning(
            "reconciliation report of run %s: send failed (%s), retry in %ss", run_id, exc, delay
        )
        raise self.retry(exc=exc, countdown=delay) from exc


@shared_task(name="reconciliation.run", ignore_result=True)
def reconciliation_run_task(window_start: str, window_end: str, trigger: str = "task") -> int:
    """Reconcile [window_start, window_end) (ISO date-times)."""
    run = reconciliation_run(
        window_start=datetime.fromisoformat(window_start),
        window_end=datetime.fromisoformat(window_end),
        trigger=trigger,
    )
    return run.pk
