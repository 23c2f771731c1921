"""Nightly reconciliation of Stripe balance transactions against the ledger.

Imports ledger and the Stripe seam; never payouts."""

from django.apps import AppConfig


class ReconciliationConfig(AppConfig):
    name = "reconciliation"
    verbose_name = "Reconciliation"

    def ready(self) -> None:
        # Registers the Celery tasks (the beat schedule is config/settings.py's).
        from reconciliation import tasks  # noqa: F401
