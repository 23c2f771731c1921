from django.apps import AppConfig


class LedgerConfig(AppConfig):
    name = "ledger"
    verbose_name = "Ledger"

    def ready(self) -> None:
        from django.conf import settings

        from ledger import conf

        conf.configure_numscript()
        schedule = getattr(settings, "CELERY_BEAT_SCHEDULE", None)
        if isinstance(schedule, dict):
            # The sealer also runs after commits (debounced); beat is the backstop.
            schedule.setdefault(
                "ledger-seal",
                {"task": "ledger.seal", "schedule": float(conf.get("LEDGER_SEAL_INTERVAL"))},
            )
            schedule.setdefault("ledger-verify", {"task": "ledger.verify", "schedule": 24 * 3600.0})
