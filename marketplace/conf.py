"""Marketplace settings: declared here (name, default, meaning), read from the environment
once by config/settings.py (`config.knobs`); the code reads them through `get`.

ORDER_PAYMENT_TTL            unpaid orders older than this are canceled and their coupon goes
                             back (Celery beat), seconds (3600)
REFUNDS_SWEEP_GRACE          refunds pending (no re_ id) for longer than this are submitted
                             again with the same key by the beat's sweeper, seconds (300);
                             also the lease of a submission on its refund
REFUNDS_SWEEP_MAX_AGE        past this (Stripe keeps idempotency keys for 24 h) they are
                             flagged for staff instead, never sent again, seconds (82800)
MARKETPLACE_DISPUTE_BEARER   who bears a dispute's amount: "platform" (platform:disputes) or
                             "restaurant" (its balance may go negative); the dispute fee is
                             always the platform's ("platform")
MARKETPLACE_DEFER_SECONDS    retry delay of an event that arrived before the one it depends
                             on (a refund before its payment), seconds (5.0)
MARKETPLACE_SETTLEMENT_GRACE an order paid but awaiting its balance transaction (asynchronous
                             capture) is looked up at Stripe by the settlement sweeper once
                             it has waited this long, then on every pass, seconds (60.0)
REFUNDS_APPROVAL_THRESHOLD   four-eyes rule: a refund above this many minor units of its asset
                             waits for a different user with marketplace.approve_refund; an
                             asset not listed needs approval for every refund, 0 means every
                             refund of that asset (JSON: {"USD/2": 5000})
REFUNDS_DUPLICATE_WINDOW     a refund request without an idempotency key equal to one made by
                             the same user on the same order (amount, bearer, shares) within
                             this many seconds is the same request: the first refund is
                             returned (a double submit never refunds twice); 0 turns it off
                             (600)
RISK_COVERAGE_ALERT_BELOW    the daily risk snapshot e-mails an alert when the Stripe balance
                             covers less than this fraction of what is owed (1.0: any
                             shortfall)
RISK_ALERT_RECIPIENTS        who receives that alert (comma-separated; "": the nightly
                             reconciliation report's recipients)
RISK_SNAPSHOT_HOUR           UTC hour of the daily snapshot (4)
"""

from typing import Any

from django.conf import settings

from config.knobs import Knob, knobs_defaults

KNOBS: dict[str, Knob] = {
    "ORDER_PAYMENT_TTL": Knob(3600, "int", "cancel unpaid orders after, seconds"),
    "REFUNDS_SWEEP_GRACE": Knob(300, "int", "re-send pending refunds older than, seconds"),
    "REFUNDS_SWEEP_MAX_AGE": Knob(23 * 3600, "int", "flag (never re-send) after, seconds"),
    "MARKETPLACE_DISPUTE_BEARER": Knob("platform", "str", '"platform" or "restaurant"'),
    "MARKETPLACE_DEFER_SECONDS": Knob(5.0, "float", "retry delay of an early event"),
    "MARKETPLACE_SETTLEMENT_GRACE": Knob(60.0, "float", "sweep awaiting settlement after, s"),
    "REFUNDS_APPROVAL_THRESHOLD": Knob(
        {"USD/2": 5000}, "json", "four eyes above this, minor units per asset (JSON)"
    ),
    "REFUNDS_DUPLICATE_WINDOW": Knob(
        600, "int", "same refund request without a key within, seconds"
    ),
    "RISK_COVERAGE_ALERT_BELOW": Knob(1.0, "float", "alert when coverage falls below"),
    "RISK_ALERT_RECIPIENTS": Knob("", "str", "coverage alert e-mail, comma-separated"),
    "RISK_SNAPSHOT_HOUR": Knob(4, "int", "UTC hour of the daily risk snapshot"),
}
DEFAULTS: dict[str, Any] = knobs_defaults(KNOBS)


def get(name: str) -> Any:
    return getattr(settings, name, DEFAULTS[name])
