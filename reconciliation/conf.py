"""Reconciliation settings with their defaults (override any of them in Django settings).

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

DEFAULTS: dict[str, Any] = {
    "RECONCILIATION_GRACE_SECONDS": 2 * 24 * 3600,
    "RECONCILIATION_NIGHTLY_HOUR": 2,
    "RECONCILIATION_NIGHTLY_MINUTE": 30,
    "RECONCILIATION_BOOK_FEES": True,
    "RECONCILIATION_SUGGEST_LIMIT": 2000,
    "RECONCILIATION_EVENT_SCAN_LIMIT": 20_000,
    "RECONCILIATION_WORK_MEM": "256MB",
}


def get(name: str) -> Any:
    return getattr(settings, name, DEFAULTS[name])
