"""Payouts settings: declared here (name, default, meaning), read from the environment once
by config/settings.py (`config.knobs`), read by the code through `get`.

PAYOUTS_MIN_AMOUNT            smallest payout, minor units; an int for every asset or a dict
                              {asset: int} (missing assets use the "*" key, else 1) (1000)
PAYOUTS_ROLLING_RESERVE_BPS   rolling reserve kept on the payee, in basis points of what it
                              was credited over the last PAYOUTS_ROLLING_RESERVE_DAYS (0: off)
PAYOUTS_ROLLING_RESERVE_DAYS  the reserve's window, days (7)
PAYOUTS_SCHEDULE_SECONDS      Celery beat cadence of the scheduling pass (3600)
PAYOUTS_SWEEP_SECONDS         Celery beat cadence of the sweeper (60)
PAYOUTS_LEASE_SECONDS         how long a driver owns a payout; renewed while it works (300)
PAYOUTS_STUCK_SECONDS         per state, age after which the sweeper re-drives a payout that
                              no worker holds ({"pending": 60, "reserved": 120, ...})
PAYOUTS_ESCALATE_SECONDS      a payout unresolved in `submitting` this long is logged as an
                              error and flagged for staff (needs_attention) (3600)
PAYOUTS_SCHEDULE_CHUNK        payees per scheduling transaction (200)
PAYOUTS_DRIVE_BATCH           payouts per driving task (100)
PAYOUTS_STRIPE_CONCURRENCY    Stripe calls a driving task makes at once (8)
PAYOUTS_SWEEP_LIMIT           payouts one sweep re-drives at most (5000)
PAYOUTS_TASK_MAX_RETRIES      Celery retries of a driving task before the sweeper takes over (5)
PAYOUTS_QUEUE                 the Celery queue of the payout tasks ("celery")
"""

from __future__ import annotations

from typing import Any

from django.conf import settings

from config.knobs import Knob, knobs_defaults

STUCK_SECONDS = {
    "pending": 60.0,
    "reserved": 120.0,
    "submitting": 120.0,
    "submitted": 60.0,
    "failed": 300.0,
}
KNOBS: dict[str, Knob] = {
    "PAYOUTS_MIN_AMOUNT": Knob(1000, "json", "smallest payout: an int, or {asset: int}"),
    "PAYOUTS_ROLLING_RESERVE_BPS": Knob(0, "int", "rolling reserve, basis points"),
    "PAYOUTS_ROLLING_RESERVE_DAYS": Knob(7, "int", "the reserve's window, days"),
    "PAYOUTS_SCHEDULE_SECONDS": Knob(3600.0, "float", "beat cadence of the scheduling pass"),
    "PAYOUTS_SWEEP_SECONDS": Knob(60.0, "float", "beat cadence of the sweeper"),
    "PAYOUTS_LEASE_SECONDS": Knob(300.0, "float", "how long a driver owns a payout"),
    "PAYOUTS_STUCK_SECONDS": Knob(STUCK_SECONDS, "json", "per state, re-drive after (JSON)"),
    "PAYOUTS_ESCALATE_SECONDS": Knob(3600.0, "float", "flag a payout stuck submitting"),
    "PAYOUTS_SCHEDULE_CHUNK": Knob(200, "int", "payees per scheduling transaction"),
    "PAYOUTS_DRIVE_BATCH": Knob(100, "int", "payouts per driving task"),
    "PAYOUTS_STRIPE_CONCURRENCY": Knob(8, "int", "Stripe calls a driving task makes at once"),
    "PAYOUTS_SWEEP_LIMIT": Knob(5000, "int", "payouts one sweep re-drives at most"),
    "PAYOUTS_TASK_MAX_RETRIES": Knob(5, "int", "driving task retries before the sweeper"),
    "PAYOUTS_QUEUE": Knob("celery", "str", "the Celery queue of the payout tasks"),
}
DEFAULTS: dict[str, Any] = knobs_defaults(KNOBS)


def get(name: str) -> Any:
    return getattr(settings, name, DEFAULTS[name])


def min_amount(asset: str) -> int:
    """The minimum payout for `asset` (at least 1)."""
    value = get("PAYOUTS_MIN_AMOUNT")
    if isinstance(value, dict):
        value = value.get(asset, value.get("*", 1))
    return max(1, int(value))


def stuck_seconds(state: str) -> float:
    table = {**DEFAULTS["PAYOUTS_STUCK_SECONDS"], **(get("PAYOUTS_STUCK_SECONDS") or {})}
    return float(table.get(state, 300.0))
