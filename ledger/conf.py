"""Ledger settings: declared here (name, default, meaning), read from the environment once
by config/settings.py (`config.knobs`), read by the code through `get`.

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

from config.knobs import Knob, knobs_defaults

KNOBS: dict[str, Knob] = {
    "LEDGER_BALANCE_SHARDS": Knob(8, "int", "shard rows per hot (account, asset)"),
    "LEDGER_WRITE_PATH": Knob("postgres", "str", '"postgres" or "portable"'),
    "LEDGER_SEAL_ON_COMMIT": Knob(True, "bool", "schedule the sealer after commits"),
    "LEDGER_SEAL_DEBOUNCE": Knob(2.0, "float", "seconds between schedulings per process"),
    "LEDGER_SEAL_INTERVAL": Knob(5.0, "float", "Celery beat period of the sealer, seconds"),
}
# Code, not environment: the chart is part of the books' definition (config/settings.py).
DEFAULTS: dict[str, Any] = {**knobs_defaults(KNOBS), "LEDGER_CHART_OF_ACCOUNTS": []}


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
