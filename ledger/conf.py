"""Ledger settings with their defaults (override any of them in Django settings).

LEDGER_BALANCE_SHARDS     shard rows per hot (account, asset) for unchecked writes (8)
LEDGER_WRITE_PATH         "postgres": the one-statement function on PostgreSQL; "portable":
                          the step-by-step Python path (always used on SQLite) ("postgres")
LEDGER_SEAL_ON_COMMIT     schedule the sealer task after commits (True)
LEDGER_SEAL_DEBOUNCE      at most one scheduling per process per this many seconds (2.0)
LEDGER_SEAL_INTERVAL      Celery beat period of the sealer, seconds (5.0)
LEDGER_CHART_OF_ACCOUNTS  [(pattern, type), ...], first match wins (config/settings.py)
"""

from typing import Any

from django.conf import settings
from django.core.signals import setting_changed
from django.dispatch import receiver

DEFAULTS: dict[str, Any] = {
    "LEDGER_BALANCE_SHARDS": 8,
    "LEDGER_WRITE_PATH": "postgres",
    "LEDGER_SEAL_ON_COMMIT": True,
    "LEDGER_SEAL_DEBOUNCE": 2.0,
    "LEDGER_SEAL_INTERVAL": 5.0,
    "LEDGER_CHART_OF_ACCOUNTS": [],
}


_cache: dict[str, Any] = {}


def get(name: str) -> Any:
    """The setting's value (cached: read on every posting; cleared when a test overrides a
    setting)."""
    try:
        return _cache[name]
    except KeyError:
        value = _cache[name] = getattr(settings, name, DEFAULTS[name])
        return value


@receiver(setting_changed)
def _clear(**kwargs: Any) -> None:
    _cache.clear()
