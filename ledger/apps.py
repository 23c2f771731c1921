from django.apps import AppConfig


class LedgerConfig(AppConfig):
    name = "ledger"
    verbose_name = "Ledger"

    def ready(self) -> None:
        # Registers the ledger's Celery tasks, which services send by name (the beat schedule
        # is config/settings.py's).
        from ledger import (
            conf,
            tasks,  # noqa: F401
        )

        # The NUMSCRIPT_* settings become the interpreter's default limits.
        conf.configure_numscript()
