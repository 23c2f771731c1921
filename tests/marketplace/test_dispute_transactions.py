"""A dispute's balance transactions, however many, each booked once (amount and fee), in
any order of the events and as Stripe's list grows. Stripe is faked at the seam."""

from __future__ import annotations

from typing import Any

import pytest

from ledger.selectors import balance_get, transactions_list
from marketplace.models import Dispute
from tests.marketplace.factories import RestaurantFactory
from tests.marketplace.fakes import FakeGateway, card_fee, dispute, fake_gateway
from tests.marketplace.flows import event, pay, placed_order, process

__all__ = ["fake_gateway"]

pytestmark = pytest.mark.django_db
USD = "USD/2"


def bal(address: str) -> int:
    return balance_get(address=address, asset=USD)


def _bt(txn_id: str, amount: int, fee: int, created: int) -> dict[str, Any]:
    return {
        "id": txn_id,
        "object": "balance_transaction",
        "amount": amount,
        "fee": fee,
        "net": amount - fee,
        "created": created,
        "reporting_category": "dispute" if amount < 0 or fee > 0 else "dispute_reversal",
    }


def test_a_growing_list_with_ties_books_each_balance_transaction_once(
    fake_gateway: FakeGateway,
) -> None:
    # given: a paid order, disputed (withdrawal txn_m: -2500, fee 1500), booked
    order, intent = placed_order(
        fake_gateway, restaurant_id=RestaurantFactory().pk, subtotal=2000, delivery_fee=500
    )
    ch = pay(fake_gateway, order, intent)
    dp = fake_gateway.add(dispute(charge_id=ch["id"], payment_intent_id=intent["id"], amount=2500))
    dp["balance_transactions"] = [_bt("txn_m", -2500, 1500, 1_700_000_000)]
    assert process(event("charge.dispute.funds_withdrawn", dp)).status == "processed"

    # when: Stripe adds, in the SAME second, a counter fee whose id sorts first; then the
    # dispute is won and the fee given back; every event delivered twice
    dp["balance_transactions"] = [
        _bt("txn_m", -2500, 1500, 1_700_000_000),
        _bt("txn_a", 0, 1500, 1_700_000_000),
    ]
    for _ in range(2):
        assert process(event("charge.dispute.updated", dp)).status == "processed"
    dp["balance_transactions"] += [
        _bt("txn_r", 2500, 0, 1_700_000_100),
        _bt("txn_f", 0, -1500, 1_700_000_200),
    ]
    dp["status"] = "won"
    for _ in range(2):
        assert process(event("charge.dispute.closed", dp)).status == "processed"

    # then: four ledger transactions, one per balance transaction, summing to Stripe's net
    refs = {
        tx.reference: tx.metadata["stripe_balance_transaction"]
        for tx in transactions_list(metadata={"stripe_object": dp["id"]})
    }
    assert refs == {
        f"dispute-withdrawn:{dp['id']}": "txn_m",
        f"dispute-withdrawn:{dp['id']}:txn_a": "txn_a",
        f"dispute-reinstated:{dp['id']}": "txn_r",
        f"dispute-reinstated:{dp['id']}:txn_f": "txn_f",
    }
    row = Dispute.objects.get(stripe_dispute_id=dp["id"])
    assert (row.amount_withdrawn, row.amount_reinstated, row.fee) == (2500, 2500, 1500)
    assert bal("platform:disputes") == 0
    assert bal("platform:stripe_fees") == -(card_fee(2500) + 1500)
    stripe_net = sum(t["net"] for t in dp["balance_transactions"])
    assert bal("stripe:balance") == -(2500 - card_fee(2500)) - stripe_net
