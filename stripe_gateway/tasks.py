"""Celery tasks of the webhook inbox: thin wrappers around `stripe_gateway.services`."""

from __future__ import annotations

from celery import shared_task
from django.db import InterfaceError, OperationalError
from django.utils import timezone

from stripe_gateway import services


# The task names predate this app (the inbox lived in marketplace.webhooks); they are kept so
# that messages already queued, and beat entries, still find their task.
@shared_task(
    name=services.PROCESS_TASK,
    bind=True,
    acks_late=True,
    autoretry_for=(OperationalError, InterfaceError),  # the database itself was unreachable
    retry_backoff=True,
    retry_backoff_max=600,
    max_retries=8,
)
def stripe_event_process(self, event_id: str) -> str:
    """Process one inbox row; re-enqueue itself for the row's next attempt after a failure.

    The row, not this message, is the source of truth: if the message is lost the sweeper
    re-drives the row. In eager mode (demo, tests) retries are left to the sweeper, since an
    eager retry would run immediately, in the web request.
    """
    outcome = services.event_process(event_id=event_id)
    if outcome.retry_at is not None and not self.request.is_eager:
        countdown = max(0.0, (outcome.retry_at - timezone.now()).total_seconds()) + 1.0
        raise self.retry(countdown=countdown, max_retries=None)
    return outcome.status


@shared_task(
    name=services.DRAIN_TASK,
    acks_late=True,
    autoretry_for=(OperationalError, InterfaceError),
    retry_backoff=True,
    retry_backoff_max=600,
    max_retries=8,
)
def stripe_events_drain(slot: int) -> int:
    """Process every new inbox row this worker can claim (see `services.events_drain`);
    returns how many it ran."""
    return services.events_drain(slot=slot).processed


@shared_task(name="marketplace.webhooks.tasks.stripe_events_sweep")
def stripe_events_sweep() -> int:
    """Every 30 s (CELERY_BEAT_SCHEDULE): re-drive due, deferred, failed and stale rows."""
    return services.events_sweep()
