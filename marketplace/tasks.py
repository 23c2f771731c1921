"""Celery task discovery (`autodiscover_tasks` imports `<app>.tasks`)."""

from marketplace.webhooks.tasks import stripe_event_process, stripe_events_sweep

__all__ = ["stripe_event_process", "stripe_events_sweep"]
