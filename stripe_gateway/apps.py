from django.apps import AppConfig


class StripeGatewayConfig(AppConfig):
    name = "stripe_gateway"
    verbose_name = "Stripe gateway"

    def ready(self) -> None:
        # Registers the inbox's Celery tasks, which services send by name.
        from stripe_gateway import conf, tasks  # noqa: F401

        conf.validate()
