from django.apps import AppConfig


class StaffConfig(AppConfig):
    name = "staff"
    verbose_name = "Staff"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        # Registers the nightly finance job and the risk snapshot, which the beat schedule
        # (config/settings.py) sends by name.
        from staff import tasks  # noqa: F401
