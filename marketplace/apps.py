from django.apps import AppConfig


class MarketplaceConfig(AppConfig):
    name = "marketplace"
    verbose_name = "Marketplace"

    def ready(self) -> None:
        # Fill the Stripe webhook handler table (web, worker and beat alike), and register the
        # money flows' Celery tasks.
        from marketplace import handlers  # noqa: F401
        from marketplace.services import tasks  # noqa: F401
