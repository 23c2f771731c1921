"""The payment webhooks through the real inbox: idempotency, unknown orders, out-of-order
failures, mismatches. Stripe is faked at the seam."""

from __future__ import annotations

from typing import Any

import pytest
from django.db import transaction

from ledger.selectors import balance_get, transactions_list
from marketplace.models import Anomaly, Order
from marketplace.services import payments
from marketplace.services.locks import order_lock
from stripe_gateway.models import StripeEvent
from tests.marketplace.factories import CampaignFactory, RestaurantFactory
from tests.marketplace.fakes import FakeGateway, card_fee, charge, fake_gateway, payment_intent
from tests.marketplace.flows import event, pay, placed_order, process

__all__ = ["fake_gateway"]

pytestmark = pytest.mark.django_db
USD = "USD/2"


def bal(address: str) -> int:
    return balance_get(address=address, asset=USD)


def ledger_count() -> int:
    return transactions_list().count()


def booked_order(fake_gateway: FakeGateway) -> tuple[Order, dict[str, Any]]:
    """An order paid by a charge whose `charge.succeeded` booked it: (order, charge)."""
    restaurant = RestaurantFactory()
    order, intent = placed_order(
        fake_gateway, restaurant_id=restaurant.pk, subtotal=2000, delivery_fee=500
    )
    ch = pay(fake_gateway, order, intent)
    assert process(event("charge.succeeded", ch)).status == "processed"
    return order, ch


def test_duplicate_and_sibling_events_book_the_payment_once(fake_gateway: FakeGateway) -> None:
    # given
    restaurant = RestaurantFactory()
    order, intent = placed_order(
        fake_gateway, restaurant_id=restaurant.pk, subtotal=2000, delivery_fee=500
    )
    ch = pay(fake_gateway, order, intent)
    before = ledger_count()
    # when: charge.succeeded for the same charge, and payment_intent.succeeded redelivered
    # under a new event id (the same event id is deduplicated by the inbox itself)
    first = process(event("charge.succeeded", ch))
    second = process(event("payment_intent.succeeded", intent))
    # then
    assert (first.status, second.status) == ("processed", "processed")
    assert ledger_count() == before
    assert transactions_list(reference=f"payment:{ch['id']}").count() == 1
    assert bal(order.ledger_address) == 2500
    assert bal("stripe:balance") == -(2500 - card_fee(2500))


def test_an_event_about_a_payment_already_booked_is_settled_without_a_fetch_or_a_lock(
    fake_gateway: FakeGateway, django_assert_max_num_queries: Any
) -> None:
    # given: an order paid and booked by its charge
    _, ch = booked_order(fake_gateway)
    fake_gateway.calls.clear()
    second = event("charge.updated", ch)

    # when: claim, the already-booked check, the lease-guarded UPDATE
    with django_assert_max_num_queries(3 + 1):  # + the inbox insert of `process`
        outcome = process(second)

    # then: processed with the same note, nothing fetched, nothing booked again
    assert outcome.status == "processed"
    assert fake_gateway.calls == []
    row = StripeEvent.objects.get(stripe_id=second["id"])
    assert (row.status, row.last_error) == ("processed", "booked")
    assert transactions_list(reference=f"payment:{ch['id']}").count() == 1


def test_a_sibling_event_that_raced_past_the_check_books_nothing_under_the_lock(
    fake_gateway: FakeGateway, monkeypatch: pytest.MonkeyPatch
) -> None:
    # given: two events of one payment both found it unbooked before either took the order's
    # lock (two drains); the first has booked it
    order, ch = booked_order(fake_gateway)
    fetched = fake_gateway.charge_retrieve(ch["id"], expand=("balance_transaction",))
    posts: list[str] = []
    monkeypatch.setattr(payments, "flow_post", lambda name, **kw: posts.append(name))

    # when: the second books the charge it fetched, under the order's lock
    with transaction.atomic():
        outcome = payments.payment_book(order=order_lock(order_id=order.pk), charge=fetched)

    # then: booked before; no script run, no ledger replay, no second status change
    assert outcome == payments.BOOKED
    assert posts == []
    assert transactions_list(reference=f"payment:{ch['id']}").count() == 1
    assert Order.objects.get(pk=order.pk).status == Order.Status.PAID


def test_event_for_an_unknown_order_is_recorded_and_flagged(fake_gateway: FakeGateway) -> None:
    # given: a charge whose metadata names no order of ours
    intent = fake_gateway.add(payment_intent(amount=1000, metadata={"order_id": "987654"}))
    ch = fake_gateway.add(charge(amount=1000, payment_intent_id=intent["id"], order_id=987654))
    intent["latest_charge"] = ch["id"]
    payload = event("payment_intent.succeeded", intent)
    # when
    outcome = process(payload)
    # then
    assert outcome.status == "ignored"
    row = StripeEvent.objects.get(stripe_id=payload["id"])
    assert row.status == "ignored"
    assert row.last_error.startswith("unknown order")
    anomaly = Anomaly.objects.get(kind="unknown_order")
    assert anomaly.stripe_object == ch["id"]
    assert anomaly.stripe_event_id == payload["id"]
    assert ledger_count() == 0


@pytest.mark.parametrize("foreign_id", ["\u00b2", "99999999999999999999999", "12a", "-3"])
def test_event_whose_order_id_is_not_one_of_ours_is_flagged_not_failed(
    fake_gateway: FakeGateway, foreign_id: str
) -> None:
    # given: metadata set outside our code (a Dashboard payment), not a valid order id
    intent = fake_gateway.add(payment_intent(amount=1000, metadata={"order_id": foreign_id}))
    ch = fake_gateway.add(charge(amount=1000, payment_intent_id=intent["id"], order_id=foreign_id))
    intent["latest_charge"] = ch["id"]
    payload = event("payment_intent.succeeded", intent)
    # when
    outcome = process(payload)
    # then: recorded as an unknown order for staff, nothing booked, not a retried failure
    assert outcome.status == "ignored"
    assert Anomaly.objects.filter(kind="unknown_order", stripe_object=ch["id"]).count() == 1
    assert ledger_count() == 0


def test_event_for_a_charge_stripe_does_not_know_is_flagged(fake_gateway: FakeGateway) -> None:
    # given
    payload = event("charge.succeeded", {"id": "ch_missing", "object": "charge"})
    # when
    outcome = process(payload)
    # then
    assert outcome.status == "ignored"
    assert Anomaly.objects.filter(kind="unknown_order", stripe_object="ch_missing").count() == 1
    assert ledger_count() == 0


def test_charge_without_balance_transaction_marks_the_order_awaiting_settlement(
    fake_gateway: FakeGateway,
) -> None:
    # given
    restaurant = RestaurantFactory()
    order, intent = placed_order(
        fake_gateway, restaurant_id=restaurant.pk, subtotal=2000, delivery_fee=0
    )
    ch = fake_gateway.add(
        charge(
            amount=2000,
            payment_intent_id=intent["id"],
            order_id=order.pk,
            with_balance_transaction=False,
        )
    )
    # when
    outcome = process(event("charge.succeeded", ch))
    # then: done (not deferred, nothing to retry), the payment is real, nothing booked yet
    assert (outcome.status, outcome.error) == ("processed", "awaiting_settlement")
    assert ledger_count() == 0
    order.refresh_from_db()
    assert order.status == Order.Status.AWAITING_SETTLEMENT
    assert (order.charge_id, order.amount_paid, order.stripe_fee) == (ch["id"], 2000, 0)


def test_amount_mismatch_is_booked_as_charged_and_flagged(fake_gateway: FakeGateway) -> None:
    # given
    restaurant = RestaurantFactory()
    order, intent = placed_order(
        fake_gateway, restaurant_id=restaurant.pk, subtotal=2000, delivery_fee=0
    )
    # when
    ch = pay(fake_gateway, order, intent, amount=1900)
    # then
    assert order.amount_paid == 1900
    assert bal(order.ledger_address) == 1900
    assert Anomaly.objects.get(kind="amount_mismatch").stripe_object == ch["id"]


def test_failure_event_after_success_changes_nothing(fake_gateway: FakeGateway) -> None:
    # given: a paid order with a coupon; an earlier attempt had failed (its event is late)
    restaurant = RestaurantFactory()
    CampaignFactory(code="OOO", per_order_cap=300, funding=1000)
    order, intent = placed_order(
        fake_gateway, restaurant_id=restaurant.pk, subtotal=1500, delivery_fee=0, coupon_code="OOO"
    )
    failed_snapshot = dict(intent, status="requires_payment_method")
    pay(fake_gateway, order, intent)
    before = ledger_count()
    # when
    outcome = process(event("payment_intent.payment_failed", failed_snapshot))
    # then: prepare fetched the PaymentIntent (succeeded): nothing released
    assert outcome.status == "processed"
    assert ledger_count() == before
    order.refresh_from_db()
    assert (order.status, order.coupon_state) == ("paid", "captured")
    assert bal("coupons:OOO") == 700
    assert bal(order.ledger_address) == 1500


def test_failure_releases_the_coupon_once(fake_gateway: FakeGateway) -> None:
    # given
    restaurant = RestaurantFactory()
    CampaignFactory(code="FAIL", per_order_cap=300, funding=1000)
    order, intent = placed_order(
        fake_gateway, restaurant_id=restaurant.pk, subtotal=1500, delivery_fee=0, coupon_code="FAIL"
    )
    # when
    process(event("payment_intent.payment_failed", intent))
    intent["status"] = "canceled"
    process(event("payment_intent.canceled", intent))
    # then
    order.refresh_from_db()
    assert (order.status, order.coupon_state) == ("canceled", "released")
    assert bal("coupons:FAIL") == 1000
    assert transactions_list(reference=f"coupon-release:{order.pk}").count() == 1


def test_payment_metadata_for_reconciliation(fake_gateway: FakeGateway) -> None:
    # given
    restaurant = RestaurantFactory()
    order, intent = placed_order(
        fake_gateway, restaurant_id=restaurant.pk, subtotal=1000, delivery_fee=0
    )
    # when
    ch = pay(fake_gateway, order, intent)
    # then: the net movement of stripe:balance is minus the balance transaction's net
    tx = transactions_list(reference=f"payment:{ch['id']}").get()
    assert tx.metadata == {
        "stripe_object": ch["id"],
        "stripe_balance_transaction": ch["balance_transaction"]["id"],
        "order_id": str(order.pk),
        "payment_intent": intent["id"],
        "charge": ch["id"],
        "flow": "payment",
    }
    movement = sum(
        (p.amount if p.destination.address == "stripe:balance" else 0)
        - (p.amount if p.source.address == "stripe:balance" else 0)
        for p in tx.postings.all()
    )
    assert movement == -ch["balance_transaction"]["net"]
