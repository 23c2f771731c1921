from django.apps import AppConfig


class InvoicingConfig(AppConfig):
    name = "invoicing"
    verbose_name = "Invoicing"

    def ready(self) -> None:
        # Registers the invoicing Celery tasks (the beat schedule is config/settings.py's).
        from invoicing import tasks  # noqa: F401
