"""Celery tasks of reconciliation: thin wrappers over `reconciliation.services`.

`reconciliation.nightly` is scheduled by Celery beat (see `apps.py`) shortly after midnight
UTC and reconciles the previous day. A run that fails is stored as `failed` with its error and
the task re-raises, so the worker's logs and monitoring see it; the next night's run does not
depend on it (each window is independent; re-run a day with `manage.py reconcile --date`).
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta

from celery import shared_task
from django.utils import timezone

from reconciliation.services import reconciliation_run, window_for_day

logger = logging.getLogger(__name__)


@shared_task(name="reconciliation.nightly", ignore_result=True)
def reconciliation_nightly() -> int:
    """Reconcile yesterday (UTC). Returns the run id."""
    yesterday = timezone.now().astimezone(UTC).date() - timedelta(days=1)
    start, end = window_for_day(yesterday)
    run = reconciliation_run(window_start=start, window_end=end, trigger="beat")
    if run.problems:
        logger.error(
            "reconciliation run %s of %s: %s problem(s) need attention",
            run.pk,
            yesterday,
            run.problems,
        )
    return run.pk


@shared_task(name="reconciliation.run", ignore_result=True)
def reconciliation_run_task(window_start: str, window_end: str, trigger: str = "task") -> int:
    """Reconcile [window_start, window_end) (ISO date-times)."""
    run = reconciliation_run(
        window_start=datetime.fromisoformat(window_start),
        window_end=datetime.fromisoformat(window_end),
        trigger=trigger,
    )
    return run.pk
