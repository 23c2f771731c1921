from django.apps import AppConfig


class MarketplaceConfig(AppConfig):
    name = "marketplace"
    verbose_name = "Marketplace"

    def ready(self) -> None:
        from django.conf import settings

        # Fill the Stripe webhook handler table (web, worker and beat alike), and register the
        # money flows' Celery tasks.
        from marketplace import handlers  # noqa: F401
        from marketplace.services import tasks  # noqa: F401

        schedule = getattr(settings, "CELERY_BEAT_SCHEDULE", None)
        if isinstance(schedule, dict):
            schedule.setdefault(
                "marketplace-orders-expire",
                {"task": "marketplace.orders_expire", "schedule": 300.0},
            )
            schedule.setdefault(
                "marketplace-refunds-sweep",
                {"task": "marketplace.refunds_sweep", "schedule": 60.0},
            )
