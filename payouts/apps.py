from django.apps import AppConfig


class PayoutsConfig(AppConfig):
    name = "payouts"
    verbose_name = "Payouts"

    def ready(self) -> None:
        # Fills the Stripe event handler table (web, worker and beat alike).
        from payouts import handlers  # noqa: F401
