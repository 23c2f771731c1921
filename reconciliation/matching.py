"""The classification rules of reconciliation: plain data and functions, no database.

One key per (Stripe source object, asset). For it the matcher computes, in Stripe's sign
convention (positive = money INTO our Stripe balance):

- `s_net`, `s_fee`: the sums of `net` and `fee` over every imported balance transaction of
  that source (a dispute's withdrawal and reinstatement share one `dp_`, a payout and its
  failure one `po_`, so sums per source are what the ledger can be compared with);
- `l_net`: minus the ledger's net movement (input - output) on `stripe:balance` over the
  ledger transactions whose metadata `stripe_object` is that source (the ledger holds
  `stripe:balance` negative while the money sits at Stripe);
- `l_fee`: what those transactions moved from `platform:stripe_fees` to `stripe:balance`
  (minus the reverse direction): the Stripe fee as booked.

`classify()` is THE rule set. `CLASSIFY_SQL` is the same rules as a SQL CASE over columns of
the same names (PostgreSQL and SQLite), used by the set-based matcher; a Hypothesis test
proves that both agree on every input, so there is one set of rules with two renderings.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Outcome(StrEnum):
    MATCHED = "matched"
    AMOUNT_MISMATCH = "amount_mismatch"
    FEE_MISSING = "fee_missing"
    MISSING_IN_LEDGER = "missing_in_ledger"
    MISSING_AT_STRIPE = "missing_at_stripe"
    MATCHED_TWICE = "matched_twice"
    SUSPENSE = "suspense"
    # A ledger movement whose balance transaction has not appeared yet, within the grace
    # period: not a problem (yet), but it explains drift.
    AWAITING_STRIPE = "awaiting_stripe"


OUTCOME_LABELS: dict[Outcome, str] = {
    Outcome.MATCHED: "Matched",
    Outcome.AMOUNT_MISMATCH: "Amount mismatch",
    Outcome.FEE_MISSING: "Stripe fee missing",
    Outcome.MISSING_IN_LEDGER: "Missing in ledger",
    Outcome.MISSING_AT_STRIPE: "Missing at Stripe",
    Outcome.MATCHED_TWICE: "Matched twice",
    Outcome.SUSPENSE: "Suspense",
    Outcome.AWAITING_STRIPE: "Awaiting Stripe",
}

# Outcomes that need someone (or a repair) to act.
PROBLEMS = frozenset(
    {
        Outcome.AMOUNT_MISMATCH,
        Outcome.FEE_MISSING,
        Outcome.MISSING_IN_LEDGER,
        Outcome.MISSING_AT_STRIPE,
        Outcome.MATCHED_TWICE,
        Outcome.SUSPENSE,
    }
)

# Stripe's documented `reporting_category` values (stripe-python 16.1 / the 2023 spec). Any
# other value (Stripe adds new ones) goes to suspense until someone decides how to book it.
KNOWN_CATEGORIES = frozenset(
    {
        "advance",
        "advance_funding",
        "anticipation_repayment",
        "charge",
        "charge_failure",
        "climate_order_purchase",
        "climate_order_refund",
        "connect_collection_transfer",
        "connect_reserved_funds",
        "contribution",
        "dispute",
        "dispute_reversal",
        "fee",
        "financing_paydown",
        "financing_paydown_reversal",
        "financing_payout",
        "financing_payout_reversal",
        "issuing_authorization_hold",
        "issuing_authorization_release",
        "issuing_dispute",
        "issuing_transaction",
        "network_cost",
        "obligation",
        "other_adjustment",
        "partial_capture_reversal",
        "payout",
        "payout_reversal",
        "platform_earning",
        "platform_earning_refund",
        "refund",
        "refund_failure",
        "risk_reserved_funds",
        "tax",
        "topup",
        "topup_reversal",
        "transfer",
        "transfer_reversal",
        "unreconciled_customer_funds",
    }
)

# Ledger metadata written by the flows and by reconciliation itself.
META_OBJECT = "stripe_object"
META_TXN = "stripe_balance_transaction"
META_FLOW = "flow"
FLOW_FEE = "stripe-fee"  # a fee booked by reconciliation (or by a flow, separately)
FLOW_REVERT = "reconciliation-revert"  # a duplicate reverted by reconciliation

STRIPE_BALANCE = "stripe:balance"
STRIPE_FEES = "platform:stripe_fees"


@dataclass(frozen=True, slots=True)
class Figures:
    """What the matcher knows about one key. Ledger amounts in Stripe's sign."""

    has_stripe: bool  # at least one imported balance transaction for this source
    has_ledger: bool  # at least one ledger transaction moving stripe:balance for it
    unknown_category: bool = False  # some balance transaction has an unknown category
    linked: bool = True  # False: ledger movement without any stripe_object
    s_net: int = 0
    s_fee: int = 0
    l_net: int = 0
    l_fee: int = 0
    l_dup: int = 0  # most primary ledger transactions carrying one stripe_balance_transaction
    l_stale: bool = False  # the ledger's latest movement is older than the grace period


def classify(f: Figures) -> Outcome:
    """The outcome of one key. Order matters: the first rule that applies wins."""
    if f.has_stripe and f.unknown_category:
        return Outcome.SUSPENSE
    if not f.has_stripe:
        if not f.linked:
            return Outcome.SUSPENSE
        return Outcome.MISSING_AT_STRIPE if f.l_stale else Outcome.AWAITING_STRIPE
    nothing_booked = not f.has_ledger or (f.l_net == 0 and f.l_fee == 0)
    if nothing_booked:
        if f.s_net == 0 and f.s_fee == 0:
            return Outcome.MATCHED  # nothing moved at Stripe either
        return Outcome.MISSING_IN_LEDGER
    if f.l_net == f.s_net and f.l_fee == f.s_fee:
        return Outcome.MATCHED
    if f.l_dup > 1 or (f.s_net != 0 and f.l_net % f.s_net == 0 and f.l_net // f.s_net >= 2):
        return Outcome.MATCHED_TWICE
    fee_gap = f.s_fee - f.l_fee
    # The fee's money is missing from stripe:balance, or the money is right but the fee was
    # booked from another account than platform:stripe_fees.
    if fee_gap > 0 and f.l_net - f.s_net in (fee_gap, 0):
        return Outcome.FEE_MISSING
    return Outcome.AMOUNT_MISMATCH


# The same rules over columns has_s, has_l, s_unknown, linked, l_stale (0/1 integers) and
# s_net, s_fee, l_net, l_fee, l_dup (integers). SQL's `%` and `/` truncate towards zero where
# Python's floor; the multiple test only divides when the remainder is 0, where both agree.
# NULLIF: SQL does not promise to evaluate `s_net <> 0` before the division.
CLASSIFY_SQL = f"""CASE
    WHEN has_s = 1 AND s_unknown = 1 THEN '{Outcome.SUSPENSE}'
    WHEN has_s = 0 AND linked = 0 THEN '{Outcome.SUSPENSE}'
    WHEN has_s = 0 AND l_stale = 1 THEN '{Outcome.MISSING_AT_STRIPE}'
    WHEN has_s = 0 THEN '{Outcome.AWAITING_STRIPE}'
    WHEN (has_l = 0 OR (l_net = 0 AND l_fee = 0)) AND s_net = 0 AND s_fee = 0
        THEN '{Outcome.MATCHED}'
    WHEN has_l = 0 OR (l_net = 0 AND l_fee = 0) THEN '{Outcome.MISSING_IN_LEDGER}'
    WHEN l_net = s_net AND l_fee = s_fee THEN '{Outcome.MATCHED}'
    WHEN l_dup > 1 OR (l_net % NULLIF(s_net, 0) = 0 AND l_net / NULLIF(s_net, 0) >= 2)
        THEN '{Outcome.MATCHED_TWICE}'
    WHEN s_fee - l_fee > 0 AND (l_net - s_net = s_fee - l_fee OR l_net = s_net)
        THEN '{Outcome.FEE_MISSING}'
    ELSE '{Outcome.AMOUNT_MISMATCH}'
END"""


# --- what to suggest -------------------------------------------------------------------------

# Webhook event types that book each kind of source, most specific first. The one to replay
# for an object missing in the ledger is the first of these with a registered handler whose
# `data.object` is the source (or its payment intent, charge or transfer).
EVENT_TYPES_BY_SOURCE: dict[str, tuple[str, ...]] = {
    "charge": ("payment_intent.succeeded", "charge.succeeded", "charge.captured"),
    "refund": (
        "charge.refunded",
        "refund.created",
        "refund.updated",
        "charge.refund.updated",
        "refund.failed",
    ),
    "dispute": (
        "charge.dispute.funds_withdrawn",
        "charge.dispute.funds_reinstated",
        "charge.dispute.created",
        "charge.dispute.closed",
    ),
    "transfer": ("transfer.created", "transfer.updated"),
    "transfer_reversal": ("transfer.reversed",),
    "payout": ("payout.paid", "payout.failed", "payout.canceled", "payout.created"),
    "topup": ("topup.succeeded", "topup.created"),
}

SOURCE_LABELS = {
    "charge": "payment",
    "refund": "refund",
    "dispute": "dispute",
    "transfer": "transfer",
    "transfer_reversal": "transfer reversal",
    "payout": "payout",
    "topup": "top-up",
}

_PREFIXES = {
    "ch_": "charge",
    "py_": "charge",
    "re_": "refund",
    "pyr_": "refund",
    "dp_": "dispute",
    "du_": "dispute",
    "tr_": "transfer",
    "trr_": "transfer_reversal",
    "po_": "payout",
    "tu_": "topup",
}


def source_type_of(source_id: str | None, expanded: object = None) -> str:
    """The kind of a balance transaction's source: the expanded object's `object`, else
    guessed from the id's prefix; "" when unknown (no source)."""
    if isinstance(expanded, dict) and isinstance(expanded.get("object"), str):
        return str(expanded["object"])
    if not source_id:
        return ""
    for prefix, kind in _PREFIXES.items():
        if source_id.startswith(prefix):
            return kind
    return ""


def related_ids(source_id: str, expanded: dict | None) -> set[str]:
    """Ids an event's `data.object.id` may carry for this source: itself, and the payment
    intent, charge or transfer it belongs to (`charge.refunded` describes the charge)."""
    ids = {source_id}
    for field in ("payment_intent", "charge", "transfer"):
        value = (expanded or {}).get(field)
        if isinstance(value, dict):
            value = value.get("id")
        if isinstance(value, str) and value:
            ids.add(value)
    return ids


def format_money(asset: str, amount: int) -> str:
    """`USD/2 941`: the ledger's (Numscript) monetary notation, exact."""
    return f"{asset} {amount}"
