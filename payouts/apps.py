from django.apps import AppConfig


class PayoutsConfig(AppConfig):
    name = "payouts"
    verbose_name = "Payouts"

    def ready(self) -> None:
        # Fills the Stripe event handler table (web, worker and beat alike), and registers
        # the Celery tasks the services send by name (`config.celery.task_send`).
        from payouts import handlers, tasks  # noqa: F401
