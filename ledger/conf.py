"""Ledger settings: declared here (name, default, meaning), read from the environment once
by config/settings.py (`config.knobs`), read by the code through `get`.

LEDGER_BALANCE_SHARDS     shard rows per hot (account, asset) for unchecked writes (8)
LEDGER_WRITE_PATH         "postgres": the one-statement function on PostgreSQL; "portable":
                          the step-by-step Python path (always used on SQLite) ("postgres")
LEDGER_SEAL_ON_COMMIT     schedule the sealer task after commits (True)
LEDGER_SEAL_DEBOUNCE      at most one scheduling per process per this many seconds (2.0)
LEDGER_SEAL_INTERVAL      Celery beat period of the sealer, seconds (5.0)
LEDGER_CHART_OF_ACCOUNTS  [(pattern, type), ...], first match wins (config/settings.py)
LEDGER_CHECKPOINT_INTERVAL   Celery beat period of the balance checkpoints, seconds (900): a
                             past balance reads at most this long a range of postings
LEDGER_CHECKPOINT_KEEP_HOURS checkpoint runs older than this are thinned to the last one of
                             each UTC day (48)

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

from config.knobs import Knob, knobs_defaults

KNOBS: dict[str, Knob] = {
    "LEDGER_BALANCE_SHARDS": Knob(8, "int", "shard rows per hot (account, asset)"),
    "LEDGER_WRITE_PATH": Knob("postgres", "str", '"postgres" or "portable"'),
    "LEDGER_SEAL_ON_COMMIT": Knob(True, "bool", "schedule the sealer after commits"),
    "LEDGER_SEAL_DEBOUNCE": Knob(2.0, "float", "seconds between schedulings per process"),
    "LEDGER_SEAL_INTERVAL": Knob(5.0, "float", "Celery beat period of the sealer, seconds"),
    "LEDGER_CHECKPOINT_INTERVAL": Knob(900.0, "float", "beat period of balance checkpoints, s"),
    "LEDGER_CHECKPOINT_KEEP_HOURS": Knob(48.0, "float", "older checkpoints: one per UTC day"),
    "NUMSCRIPT_MAX_SCRIPT_BYTES": Knob(64 * 1024, "int", "UTF-8 size of a script, bytes"),
    "NUMSCRIPT_MAX_DEPTH": Knob(50, "int", "nesting of expressions, sources, destinations"),
    "NUMSCRIPT_MAX_STATEMENTS": Knob(1_000, "int", "statements in a script"),
    "NUMSCRIPT_MAX_SOURCES": Knob(1_000, "int", "source nodes in one send"),
    "NUMSCRIPT_MAX_DESTINATIONS": Knob(1_000, "int", "destination nodes in one send"),
    "NUMSCRIPT_MAX_BRANCHES": Knob(1_000, "int", "branches of one oneof"),
    "NUMSCRIPT_MAX_STEPS": Knob(200_000, "int", "work budget per run, in steps (deterministic)"),
    "NUMSCRIPT_PARSE_CACHE_BYTES": Knob(1024 * 1024, "int", "script text kept parsed, bytes"),
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
