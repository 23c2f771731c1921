"""Reconciliation settings: declared here (name, default, meaning), read from the
environment once by config/settings.py (`config.knobs`), read by the code through `get`.

RECONCILIATION_GRACE_SECONDS    a ledger movement on stripe:balance with no Stripe balance
                                transaction is `awaiting_stripe` for this long, then
                                `missing_at_stripe`; also how far before the window the ledger
                                is searched for such movements (2 days: card funds availability)
RECONCILIATION_NIGHTLY_HOUR     UTC hour and minute of the nightly run of the previous day
RECONCILIATION_NIGHTLY_MINUTE   (02:30)
RECONCILIATION_BOOK_FEES        book missing Stripe fees during every run (True)
RECONCILIATION_SUGGEST_LIMIT    at most this many missing_in_ledger items per run get a
                                per-item event lookup (inbox, then Stripe); the rest keep the
                                generic `stripe_events sync` suggestion (2,000)
RECONCILIATION_EVENT_SCAN_LIMIT at most this many Stripe events are listed when looking for the
                                events of objects missing in the ledger (20,000)
RECONCILIATION_WORK_MEM         PostgreSQL work_mem for the matching transaction ("256MB")
"""

from typing import Any

from django.conf import settings

from config.knobs import Knob, knobs_defaults

KNOBS: dict[str, Knob] = {
    "RECONCILIATION_GRACE_SECONDS": Knob(2 * 24 * 3600, "int", "awaiting_stripe period"),
    "RECONCILIATION_NIGHTLY_HOUR": Knob(2, "int", "UTC hour of the nightly run"),
    "RECONCILIATION_NIGHTLY_MINUTE": Knob(30, "int", "UTC minute of the nightly run"),
    "RECONCILIATION_BOOK_FEES": Knob(True, "bool", "book missing Stripe fees in every run"),
    "RECONCILIATION_SUGGEST_LIMIT": Knob(2000, "int", "per-item event lookups per run"),
    "RECONCILIATION_EVENT_SCAN_LIMIT": Knob(20_000, "int", "Stripe events listed at most"),
    "RECONCILIATION_WORK_MEM": Knob("256MB", "str", "PostgreSQL work_mem for matching"),
}
DEFAULTS: dict[str, Any] = knobs_defaults(KNOBS)


def get(name: str) -> Any:
    return getattr(settings, name, DEFAULTS[name])
