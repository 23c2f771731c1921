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
RECONCILIATION_REPORT_RECIPIENTS  who receives the nightly report by e-mail: addresses
                                separated by commas ("": nobody, the report is not sent)
RECONCILIATION_REPORT_FROM      its From: address
RECONCILIATION_REPORT_BASE_URL  the dashboard's public URL, for the link to the run's page
RECONCILIATION_REPORT_RETRIES   a failed send is retried this many times (backoff up to 10 min)
RECONCILIATION_REPORT_CSV_MAX_ROWS  above this many items the attached CSV keeps only the
                                items needing attention (the run page's CSV has them all)
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
    "RECONCILIATION_REPORT_RECIPIENTS": Knob("", "str", "nightly report e-mail, comma-separated"),
    "RECONCILIATION_REPORT_FROM": Knob(
        "reconciliation@eats.localhost", "str", "From: of the nightly report"
    ),
    "RECONCILIATION_REPORT_BASE_URL": Knob(
        "http://127.0.0.1:8000", "str", "dashboard URL for the report's link"
    ),
    "RECONCILIATION_REPORT_RETRIES": Knob(5, "int", "retries of a failed report send"),
    "RECONCILIATION_REPORT_CSV_MAX_ROWS": Knob(
        50_000, "int", "attach only problem items above this many"
    ),
}
DEFAULTS: dict[str, Any] = knobs_defaults(KNOBS)


def get(name: str) -> Any:
    return getattr(settings, name, DEFAULTS[name])
