from django.apps import AppConfig


class MarketplaceConfig(AppConfig):
    name = "marketplace"
    verbose_name = "Marketplace"

    def ready(self) -> None:
        # Fill the Stripe webhook handler table (web, worker and beat alike).
        from marketplace import handlers  # noqa: F401
