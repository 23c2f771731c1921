"""Reading an order's money from the LEDGER (selectors): the payment, the split, refunds
(before delivery from the order's account; after, per bearer) and lost disputes.

The marketplace rows only say which ledger transactions to read (their references are
deterministic: `payment:<ch>`, `delivery:<order>`, `refund:<re>`, `refund-failed:<re>`,
`dispute-withdrawn:<dp>`, `dispute-reinstated:<dp>`); every amount comes from the postings.
A refund whose transaction was reverted (refund.failed) counts for nothing. A dispute counts
once it is lost (withdrawn, never reinstated, Stripe status `lost`).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from typing import Any

from invoicing.domain import CreditEvent, OrderFacts
from ledger.models import Posting, Transaction
from marketplace.models import Dispute, Order, Refund
from marketplace.models.restaurants import ledger_id

CHUNK = 2000


def _transactions(references: list[str]) -> dict[str, dict[str, Any]]:
    """reference -> {"id", "timestamp", "postings": [(source, destination, amount)]}."""
    found: dict[str, dict[str, Any]] = {}
    for start in range(0, len(references), CHUNK):
        chunk = references[start : start + CHUNK]
        rows = Transaction.objects.filter(reference__in=chunk).values_list(
            "id", "reference", "timestamp"
        )
        by_id: dict[int, dict[str, Any]] = {}
        for tx_id, reference, timestamp in rows:
            entry: dict[str, Any] = {"id": tx_id, "timestamp": timestamp, "postings": []}
            found[str(reference)] = by_id[tx_id] = entry
        if not by_id:
            continue
        postings = (
            Posting.objects.filter(transaction_id__in=list(by_id))
            .order_by("transaction_id", "index")
            .values_list("transaction_id", "source__address", "destination__address", "amount")
        )
        for tx_id, source, destination, amount in postings:
            by_id[tx_id]["postings"].append((source, destination, int(amount)))
    return found


def order_facts(order_ids: Iterable[int]) -> dict[int, OrderFacts]:
    """The ledger facts of each order (orders without a booked payment are left out)."""
    ids = sorted(set(order_ids))
    orders = list(
        Order.objects.filter(pk__in=ids).values(
            "id", "asset", "customer_id", "restaurant_id", "rider_id", "charge_id"
        )
    )
    refunds = defaultdict(list)
    for refund in (
        Refund.objects.filter(order_id__in=ids)
        .exclude(stripe_refund_id="")
        .values("id", "order_id", "stripe_refund_id")
    ):
        refunds[refund["order_id"]].append(refund)
    disputes = defaultdict(list)
    for dispute in Dispute.objects.filter(order_id__in=ids, status="lost").values(
        "id", "order_id", "stripe_dispute_id"
    ):
        disputes[dispute["order_id"]].append(dispute)
    references: list[str] = []
    for order in orders:
        if order["charge_id"]:
            references.append(f"payment:{order['charge_id']}")
        references.append(f"delivery:{order['id']}")
        for refund in refunds[order["id"]]:
            re_id = refund["stripe_refund_id"]
            references += [f"refund:{re_id}", f"refund-failed:{re_id}"]
        for dispute in disputes[order["id"]]:
            dp_id = dispute["stripe_dispute_id"]
            references += [f"dispute-withdrawn:{dp_id}", f"dispute-reinstated:{dp_id}"]
    txs = _transactions(references)

    out: dict[int, OrderFacts] = {}
    for order in orders:
        oid = order["id"]
        payment = txs.get(f"payment:{order['charge_id']}") if order["charge_id"] else None
        if payment is None:
            continue
        address = f"orders:{oid}"
        facts = OrderFacts(
            order_id=oid,
            asset=order["asset"],
            customer=f"customer:{order['customer_id'] or 0}",
            restaurant=f"restaurants:{ledger_id(order['restaurant_id'])}",
            restaurant_id=order["restaurant_id"],
            rider=f"riders:{ledger_id(order['rider_id'])}" if order["rider_id"] else None,
            rider_id=order["rider_id"],
            payment_tx=payment["id"],
        )
        for source, destination, amount in payment["postings"]:
            if source == "stripe:balance" and destination.startswith("payments:"):
                facts.paid += amount
            elif destination == address and not source.startswith("payments:"):
                facts.coupon += amount
        split = txs.get(f"delivery:{oid}")
        if split is not None:
            facts.split_tx, facts.split_at = split["id"], split["timestamp"]
            for source, destination, amount in split["postings"]:
                if source != address:
                    continue
                if destination.startswith("riders:"):
                    facts.rider_amt += amount
                    facts.rider = destination
                elif destination == "platform:fees":
                    facts.fees_amt += amount
                elif destination.startswith("restaurants:"):
                    facts.restaurant_amt += amount
        for refund in sorted(refunds[oid], key=lambda r: r["id"]):
            re_id = refund["stripe_refund_id"]
            booked = txs.get(f"refund:{re_id}")
            if booked is None or f"refund-failed:{re_id}" in txs:
                continue
            shares: dict[str, int] = {}
            for source, destination, amount in booked["postings"]:
                if destination != "stripe:balance":
                    continue
                if source == address:
                    facts.pre_refunds += amount
                    facts.pre_refund_txs.append(booked["id"])
                else:
                    shares[source] = shares.get(source, 0) + amount
            if shares:
                facts.credits.append(
                    CreditEvent(f"refund:{refund['id']}", booked["id"], booked["timestamp"], shares)
                )
        for dispute in sorted(disputes[oid], key=lambda d: d["id"]):
            dp_id = dispute["stripe_dispute_id"]
            withdrawn = txs.get(f"dispute-withdrawn:{dp_id}")
            if withdrawn is None or f"dispute-reinstated:{dp_id}" in txs:
                continue
            shares = {}
            for source, destination, amount in withdrawn["postings"]:
                if destination == "stripe:balance" and source != "platform:stripe_fees":
                    shares[source] = shares.get(source, 0) + amount
            if shares:
                facts.credits.append(
                    CreditEvent(
                        f"dispute:{dispute['id']}", withdrawn["id"], withdrawn["timestamp"], shares
                    )
                )
        out[oid] = facts
    return out
