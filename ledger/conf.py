"""Ledger settings with their defaults (override any of them in Django settings).

LEDGER_BALANCE_SHARDS     shard rows per hot (account, asset) for unchecked writes (8)
LEDGER_WRITE_PATH         "postgres": the one-statement function on PostgreSQL; "portable":
                          the step-by-step Python path (always used on SQLite) ("postgres")
LEDGER_SEAL_ON_COMMIT     schedule the sealer task after commits (True)
LEDGER_SEAL_DEBOUNCE      at most one scheduling per process per this many seconds (2.0)
LEDGER_SEAL_INTERVAL      Celery beat period of the sealer, seconds (5.0)
LEDGER_CHART_OF_ACCOUNTS  [(pattern, type), ...], first match wins (config/settings.py)

Numscript limits (ledger/numscript/limits.py); a script beyond one is refused with a
Numscript error (API: 400 script_error, nothing written):
NUMSCRIPT_MAX_SCRIPT_BYTES   UTF-8 size of a script (65536)
NUMSCRIPT_MAX_DEPTH          nesting of expressions, sources and destinations (50)
NUMSCRIPT_MAX_STATEMENTS     statements in a script (1000)
NUMSCRIPT_MAX_SOURCES        source nodes in one send (1000)
NUMSCRIPT_MAX_DESTINATIONS   destination nodes in one send (1000)
NUMSCRIPT_MAX_BRANCHES       branches of one oneof (1000)
NUMSCRIPT_MAX_STEPS          work budget of one run, in steps, not time (200000)
NUMSCRIPT_PARSE_CACHE_BYTES  script text kept parsed, per process (1048576; the syntax trees
                             take ~40 times that; a script above 1/8 of it is not cached)
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
    "NUMSCRIPT_MAX_SCRIPT_BYTES": 64 * 1024,
    "NUMSCRIPT_MAX_DEPTH": 50,
    "NUMSCRIPT_MAX_STATEMENTS": 1_000,
    "NUMSCRIPT_MAX_SOURCES": 1_000,
    "NUMSCRIPT_MAX_DESTINATIONS": 1_000,
    "NUMSCRIPT_MAX_BRANCHES": 1_000,
    "NUMSCRIPT_MAX_STEPS": 200_000,
    "NUMSCRIPT_PARSE_CACHE_BYTES": 1024 * 1024,
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


def configure_numscript() -> None:
    """Install the NUMSCRIPT_* settings as the interpreter's default limits (at startup and
    whenever a test overrides a setting)."""
    from ledger.numscript import limits, parser

    limits.configure(
        limits.Limits(
            max_script_bytes=int(get("NUMSCRIPT_MAX_SCRIPT_BYTES")),
            max_depth=int(get("NUMSCRIPT_MAX_DEPTH")),
            max_statements=int(get("NUMSCRIPT_MAX_STATEMENTS")),
            max_sources=int(get("NUMSCRIPT_MAX_SOURCES")),
            max_destinations=int(get("NUMSCRIPT_MAX_DESTINATIONS")),
            max_branches=int(get("NUMSCRIPT_MAX_BRANCHES")),
            max_steps=int(get("NUMSCRIPT_MAX_STEPS")),
        )
    )
    cache_bytes = int(get("NUMSCRIPT_PARSE_CACHE_BYTES"))
    if parser.PARSE_CACHE.max_bytes != cache_bytes:
        parser.PARSE_CACHE.resize(cache_bytes)


@receiver(setting_changed)
def _clear(**kwargs: Any) -> None:
    _cache.clear()
    if str(kwargs.get("setting", "")).startswith("NUMSCRIPT_"):
        configure_numscript()
