"""Nightly reconciliation of Stripe balance transactions against the ledger.

Imports ledger and the Stripe seam; never payouts."""

from django.apps import AppConfig


class ReconciliationConfig(AppConfig):
    name = "reconciliation"
    verbose_name = "Reconciliation"

    def ready(self) -> None:
        from celery.schedules import crontab
        from django.conf import settings

        from reconciliation import conf

        schedule = getattr(settings, "CELERY_BEAT_SCHEDULE", None)
        if isinstance(schedule, dict):
            # The previous day, once Stripe has settled its balance transactions for it.
            schedule.setdefault(
                "reconciliation-nightly",
                {
                    "task": "reconciliation.nightly",
                    "schedule": crontab(
                        hour=conf.get("RECONCILIATION_NIGHTLY_HOUR"),
                        minute=conf.get("RECONCILIATION_NIGHTLY_MINUTE"),
                    ),
                },
            )
