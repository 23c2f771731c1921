"""Totals: the ledger's `stripe:balance` against Stripe's own balance, per asset.

drift = ledger - Stripe, both in Stripe's sign (the ledger holds `stripe:balance` negative
while the money is at Stripe, so the ledger's side is minus its balance). The run's open
items explain part of it: each item's `difference` is its share (an item whose repair was
applied no longer differs). What the items do not explain comes from outside the window
(activity after it, or earlier windows' open items): `unexplained`.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from django.db.models import Sum
from django.db.models.functions import Abs

from ledger.selectors import balances_get
from reconciliation.matching import STRIPE_BALANCE, Outcome
from reconciliation.models import ReconciliationItem, ReconciliationRun

EXPLAINING_ITEMS = 10


def ledger_stripe_balance() -> dict[str, int]:
    """The ledger's view of our Stripe balance per asset, in Stripe's sign."""
    balances = balances_get(pattern=STRIPE_BALANCE)
    return {asset: -amount for asset, amount in balances.accounts.get(STRIPE_BALANCE, {}).items()}


def totals_compute(
    *, run: ReconciliationRun, stripe_balance: dict[str, dict[str, int]] | None
) -> dict[str, Any]:
    """Per asset: Stripe available/pending/total, ledger, drift, explained, unexplained and
    the open items that explain the most. Without Stripe's balance, only the ledger side."""
    ledger = ledger_stripe_balance()
    open_items = ReconciliationItem.objects.filter(run=run).exclude(outcome=Outcome.MATCHED)
    open_items = open_items.exclude(repair_status=ReconciliationItem.RepairStatus.APPLIED)
    explained: dict[str, int] = defaultdict(int)
    for row in open_items.values("asset").annotate(total=Sum("difference")):
        explained[row["asset"]] = int(row["total"] or 0)
    assets = sorted(set(ledger) | set(stripe_balance or {}) | set(explained))
    totals: dict[str, Any] = {}
    for asset in assets:
        entry: dict[str, Any] = {"ledger": ledger.get(asset, 0), "explained": explained[asset]}
        if stripe_balance is not None:
            slot = stripe_balance.get(asset, {"available": 0, "pending": 0})
            stripe_total = int(slot["available"]) + int(slot["pending"])
            drift = entry["ledger"] - stripe_total
            entry.update(
                stripe_available=int(slot["available"]),
                stripe_pending=int(slot["pending"]),
                stripe_total=stripe_total,
                drift=drift,
                unexplained=drift - explained[asset],
            )
        top = (
            open_items.filter(asset=asset)
            .exclude(difference=0)
            .order_by(Abs("difference").desc(), "id")
            .values("id", "key", "outcome", "difference")[:EXPLAINING_ITEMS]
        )
        entry["explaining_items"] = list(top)
        totals[asset] = entry
    return totals
