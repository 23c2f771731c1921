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

from invoicing.bulk import as_datetime, select_any
from invoicing.domain import CreditEvent, OrderFacts
from marketplace.models.restaurants import ledger_id

# The order's transactions and their postings, in posting order, one row per posting. The
# accounts' addresses are read apart, once per distinct account: a batch's postings name each
# shared account (stripe:balance, platform:fees, a restaurant) many times.
_LEDGER_SQL = """
SELECT t.reference, t.id, t.timestamp, p.source_id, p.destination_id, p.amount
FROM ledger_transaction t
JOIN ledger_posting p ON p.transaction_id = t.id
WHERE t.reference = ANY(%s)
ORDER BY t.id, p."index"
"""
_ACCOUNTS_SQL = "SELECT id, address FROM ledger_account WHERE id = ANY(%s)"
_ORDERS_SQL = (
    "SELECT id, asset, customer_id, restaurant_id, rider_id, charge_id "
    "FROM marketplace_order WHERE id = ANY(%s)"
)
_REFUNDS_SQL = (
    "SELECT id, order_id, stripe_refund_id FROM marketplace_refund "
    "WHERE order_id = ANY(%s) AND stripe_refund_id <> ''"
)
_DISPUTES_SQL = (
    "SELECT id, order_id, stripe_dispute_id FROM marketplace_dispute "
    "WHERE order_id = ANY(%s) AND status = 'lost'"
)


def _transactions(references: list[str]) -> dict[str, dict[str, Any]]:
    """reference -> {"id", "timestamp", "postings": [(source, destination, amount)]}."""
    rows = select_any(_LEDGER_SQL, references, chunk=500)
    wanted = sorted({row[3] for row in rows} | {row[4] for row in rows})
    address = dict(select_any(_ACCOUNTS_SQL, wanted))
    found: dict[str, dict[str, Any]] = {}
    for reference, tx_id, timestamp, source, destination, amount in rows:
        entry = found.get(reference)
        if entry is None:
            entry = found[reference] = {
                "id": tx_id,
                "timestamp": as_datetime(timestamp),
                "postings": [],
            }
        entry["postings"].append((address[source], address[destination], int(amount)))
    return found


def order_facts(order_ids: Iterable[int], *, payment: bool = True) -> dict[int, OrderFacts]:
    """The ledger facts of each order (orders without a booked payment are left out).
    `payment=False` (month-end documents: the split and what was given back is all they
    need) skips the payment transaction: `paid`, `coupon` and `payment_tx` stay empty."""
    ids = sorted(set(order_ids))
    keys = ("id", "asset", "customer_id", "restaurant_id", "rider_id", "charge_id")
    orders = [dict(zip(keys, row, strict=True)) for row in select_any(_ORDERS_SQL, ids)]
    refunds: dict[int, list[dict[str, Any]]] = defaultdict(list)
    for pk, order_id, re_id in select_any(_REFUNDS_SQL, ids):
        refunds[order_id].append({"id": pk, "order_id": order_id, "stripe_refund_id": re_id})
    disputes: dict[int, list[dict[str, Any]]] = defaultdict(list)
    for pk, order_id, dp_id in select_any(_DISPUTES_SQL, ids):
        disputes[order_id].append({"id": pk, "order_id": order_id, "stripe_dispute_id": dp_id})
    references: list[str] = []
    for order in orders:
        if order["charge_id"] and payment:
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
    for order in sorted(orders, key=lambda o: o["id"]):
        oid = order["id"]
        paid = txs.get(f"payment:{order['charge_id']}") if order["charge_id"] else None
        if paid is None and payment:
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
            payment_tx=paid["id"] if paid else None,
        )
        for source, destination, amount in paid["postings"] if paid else ():
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
