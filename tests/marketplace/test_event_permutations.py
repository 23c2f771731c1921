"""Duplicated and shuffled event streams give exactly the books of the in-order stream.

One scenario per example, on a fresh order: the payment (payment_intent.created/succeeded,
charge.succeeded), a refund made in Stripe's dashboard, a refund that fails, a dispute that is
won. Hypothesis draws which events are duplicated and the order of delivery; every stream is
processed through the real inbox (deferred events retried as the sweeper would), and the
order's ledger transactions and balances must equal those of the in-order stream."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ledger.selectors import balance_get, transactions_list
from marketplace.models import Order
from tests.marketplace.factories import RestaurantFactory
from tests.marketplace.fakes import FakeGateway, charge, dispute, fake_gateway, refund
from tests.marketplace.flows import drain, event, placed_order, process

__all__ = ["fake_gateway"]

pytestmark = pytest.mark.django_db
USD = "USD/2"
SHARED = ("stripe:balance", "platform:stripe_fees", "platform:disputes", "platform:losses")


def scenario(
    fake: FakeGateway, restaurant_id: int
) -> tuple[Order, list[dict[str, Any]], dict[str, str]]:
    """A placed order, its events in Stripe's order, and the Stripe ids by role."""
    order, intent = placed_order(fake, restaurant_id=restaurant_id, subtotal=2000, delivery_fee=500)
    created = dict(intent)
    ch = fake.add(charge(amount=2500, payment_intent_id=intent["id"], order_id=order.pk))
    intent.update(status="succeeded", latest_charge=ch["id"])
    re_ok = fake.add(refund(charge_id=ch["id"], amount=700, payment_intent_id=intent["id"]))
    re_failed = fake.add(
        refund(charge_id=ch["id"], amount=300, payment_intent_id=intent["id"], status="failed")
    )
    dp = fake.add(
        dispute(charge_id=ch["id"], payment_intent_id=intent["id"], amount=1000, won=True)
    )
    events = [
        event("payment_intent.created", created),
        event("charge.succeeded", ch),
        event("payment_intent.succeeded", intent),
        event("refund.created", re_ok),
        event("charge.refunded", ch),
        event("refund.created", dict(re_failed, status="succeeded")),
        event("refund.failed", re_failed),
        event("refund.updated", re_failed),
        event("charge.dispute.created", dp),
        event("charge.dispute.funds_withdrawn", dp),
        event("charge.dispute.funds_reinstated", dp),
        event("charge.dispute.closed", dp),
    ]
    ids = {
        ch["id"]: "CH",
        intent["id"]: "PI",
        re_ok["id"]: "RE1",
        re_failed["id"]: "RE2",
        dp["id"]: "DP",
        f"orders:{order.pk}": "orders:ORDER",
    }
    return order, events, ids


def _normalize(text: str, ids: dict[str, str]) -> str:
    for real, role in sorted(ids.items(), key=lambda kv: -len(kv[0])):
        if real.startswith("orders:"):
            if text == real or text.startswith(real + ":"):
                text = role + text[len(real) :]
        else:
            text = text.replace(real, role)
    return text


def books(order: Order, ids: dict[str, str], shared_before: dict[str, int]) -> dict[str, Any]:
    """The order's books with Stripe ids replaced by their role."""
    ch_id = next(real for real, role in ids.items() if role == "CH")
    own = {
        "order": balance_get(address=order.ledger_address, asset=USD),
        "payment": balance_get(address=f"payments:{ch_id}", asset=USD),
        **{
            address: balance_get(address=address, asset=USD) - shared_before[address]
            for address in SHARED
        },
    }
    txs = []
    for tx in transactions_list(metadata={"order_id": str(order.pk)}):
        txs.append(
            (
                _normalize(tx.reference or "", ids),
                tuple(
                    (
                        _normalize(p.source.address, ids),
                        _normalize(p.destination.address, ids),
                        p.amount,
                    )
                    for p in tx.postings.all()
                ),
                _normalize(tx.metadata.get("stripe_object", ""), ids),
            )
        )
    return {"balances": own, "transactions": sorted(txs)}


def play(fake: FakeGateway, stream: list[dict[str, Any]]) -> None:
    for payload in stream:
        process(payload)
    drain()


def snapshot() -> dict[str, int]:
    return {address: balance_get(address=address, asset=USD) for address in SHARED}


@pytest.fixture
def in_order_books(fake_gateway: FakeGateway) -> dict[str, Any]:
    restaurant = RestaurantFactory()
    before = snapshot()
    order, events, ids = scenario(fake_gateway, restaurant.pk)
    play(fake_gateway, events)
    result = books(order, ids, before)
    # the in-order books themselves, checked by hand
    assert result["balances"] == {
        "order": 2500 - 700,
        "payment": 0,
        "stripe:balance": -(2500 - 103) + 700 + 1500,
        "platform:stripe_fees": -103 - 1500,
        "platform:disputes": 0,
        "platform:losses": 0,
    }
    assert [t[0] for t in result["transactions"]] == sorted(
        [
            "payment:CH",
            "refund:RE1",
            "refund:RE2",
            "refund-failed:RE2",
            "dispute-withdrawn:DP",
            "dispute-reinstated:DP",
        ]
    )
    return result


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    derandomize=True,
)
@given(data=st.data())
def test_shuffled_and_duplicated_streams_give_the_in_order_books(
    fake_gateway: FakeGateway, in_order_books: dict[str, Any], data: st.DataObject
) -> None:
    # given: a fresh order and its 12 events, some duplicated, in a drawn order
    restaurant = RestaurantFactory()
    before = snapshot()
    order, events, ids = scenario(fake_gateway, restaurant.pk)
    duplicated = data.draw(st.lists(st.sampled_from(range(len(events))), max_size=8), label="dups")
    stream = events + [events[i] for i in duplicated]
    order_of_delivery = data.draw(st.permutations(range(len(stream))), label="order")
    # when
    play(fake_gateway, [stream[i] for i in order_of_delivery])
    # then
    assert books(order, ids, before) == in_order_books
