from django.apps import AppConfig


class InvoicingConfig(AppConfig):
    name = "invoicing"
    verbose_name = "Invoicing"

    def ready(self) -> None:
        from django.conf import settings

        from invoicing import conf

        # Beat entries (each app adds its own, see config/settings.py): the sweep issues what
        # orders, refunds and lost disputes need; month-end documents are idempotent, so the
        # daily pass simply issues any closed month that lacks them.
        schedule = getattr(settings, "CELERY_BEAT_SCHEDULE", None)
        if isinstance(schedule, dict):
            schedule.setdefault(
                "invoicing-sweep",
                {
                    "task": "invoicing.tasks.invoices_sweep",
                    "schedule": conf.get("INVOICING_SWEEP_SECONDS"),
                },
            )
            schedule.setdefault(
                "invoicing-month-end",
                {"task": "invoicing.tasks.invoices_month_end", "schedule": 3600.0 * 6},
            )
