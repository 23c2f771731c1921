"""Cancelling and expiring orders: the order's cancel commits first, then its PaymentIntent is
cancelled at Stripe (`pi-cancel:<order id>`) with no transaction open; a PaymentIntent that
had already succeeded is booked as a late payment (nothing lost, nothing booked twice); an
unknown outcome is retried by the next expiry pass with the same key. Stripe is faked at the
seam (`FakeGateway` answers like Stripe: 400 `payment_intent_unexpected_state` for a
PaymentIntent that cannot be canceled)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from django.db import IntegrityError, transaction

from ledger.selectors import balance_get, transactions_list
from marketplace.models import Anomaly, Order, OrderStatusChange
from marketplace.services.errors import InvalidState
from marketplace.services.orders import (
    order_cancel,
    order_create,
    order_payment_intent_create,
    order_place,
    orders_expire,
)
from marketplace.services.parties import restaurant_onboard
from stripe_emulator import EmulatorServer
from stripe_emulator import card_fee as emulator_card_fee
from stripe_gateway.client import open_atomic_depth
from stripe_gateway.errors import InvalidRequest, OutcomeUnknown, ProviderObjectNotFound
from tests.auth import make_user, token_client
from tests.marketplace.e2e import customer_pays
from tests.marketplace.factories import CampaignFactory, RestaurantFactory
from tests.marketplace.fakes import FakeGateway, card_fee, charge, fake_gateway
from tests.marketplace.flows import event, pay, placed_order, process

__all__ = ["fake_gateway"]

pytestmark = pytest.mark.django_db
USD = "USD/2"


def bal(address: str) -> int:
    return balance_get(address=address, asset=USD)


def trail(order: Order) -> list[tuple[str, str]]:
    return list(
        OrderStatusChange.objects.filter(order=order).values_list("from_status", "to_status")
    )


def cancel_call(order: Order) -> dict[str, Any]:
    return {
        "payment_intent_id": order.payment_intent_id,
        "idempotency_key": f"pi-cancel:{order.pk}",
        "reason": "abandoned",
    }


def unknown() -> OutcomeUnknown:
    return OutcomeUnknown("timed out", operation="payment_intent_cancel")


def paid_at_stripe(
    fake: FakeGateway, order: Order, intent: dict[str, Any], **charge_kwargs: Any
) -> dict[str, Any]:
    """The customer paid: the charge exists at Stripe, its webhook has not arrived yet."""
    ch = fake.add(
        charge(
            amount=order.total, payment_intent_id=intent["id"], order_id=order.pk, **charge_kwargs
        )
    )
    intent.update(status="succeeded", latest_charge=ch["id"])
    return ch


@pytest.fixture
def coupon_order(fake_gateway: FakeGateway) -> tuple[Order, dict[str, Any]]:
    """1500 of food, 300 off with coupon LATE (funded 1000): the customer is charged 1200."""
    restaurant = RestaurantFactory()
    CampaignFactory(code="LATE", per_order_cap=300, funding=1000)
    return placed_order(
        fake_gateway, restaurant_id=restaurant.pk, subtotal=1500, delivery_fee=0, coupon_code="LATE"
    )


# --- the PaymentIntent is cancelled after the commit ----------------------------------------------
def test_expiry_cancels_the_payment_intent_at_stripe_after_the_order_commits(
    fake_gateway: FakeGateway,
    coupon_order: tuple[Order, dict[str, Any]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # given: what the database holds when Stripe is called
    order, intent = coupon_order
    seen: list[tuple[int, str, str]] = []
    real_cancel = fake_gateway.payment_intent_cancel

    def observing_cancel(**kwargs: Any) -> dict[str, Any]:
        row = Order.objects.get(pk=order.pk)
        seen.append((open_atomic_depth(), row.status, row.payment_intent_cancel))
        return real_cancel(**kwargs)

    monkeypatch.setattr(fake_gateway, "payment_intent_cancel", observing_cancel)

    # when
    expired = orders_expire(older_than_seconds=0)

    # then: the cancel and the coupon release were committed before the one Stripe call
    order.refresh_from_db()
    assert expired == 1
    assert seen == [(0, "canceled", "pending")]
    assert fake_gateway.calls_of("payment_intent_cancel") == [cancel_call(order)]
    assert fake_gateway.objects[intent["id"]]["status"] == "canceled"
    assert (order.status, order.payment_intent_cancel) == ("canceled", "canceled")
    assert order.coupon_state == Order.CouponState.RELEASED
    assert bal("coupons:LATE") == 1000
    assert trail(order) == [("created", "pending_payment"), ("pending_payment", "canceled")]


def test_an_order_without_a_payment_intent_is_canceled_without_calling_stripe(
    fake_gateway: FakeGateway,
) -> None:
    # given: created, its PaymentIntent never made
    order = order_create(restaurant_id=RestaurantFactory().pk, subtotal=1500, delivery_fee=0)

    # when
    expired = orders_expire(older_than_seconds=0)

    # then
    order.refresh_from_db()
    assert expired == 1
    assert (order.status, order.payment_intent_cancel) == ("canceled", "none")
    assert fake_gateway.calls == []


def test_a_second_pass_does_not_call_stripe_again(
    fake_gateway: FakeGateway, coupon_order: tuple[Order, dict[str, Any]]
) -> None:
    # given
    order, _intent = coupon_order
    orders_expire(older_than_seconds=0)

    # when
    again = orders_expire(older_than_seconds=0)
    order_cancel(order_id=order.pk, note="staff again")

    # then
    assert again == 0
    assert len(fake_gateway.calls_of("payment_intent_cancel")) == 1
    assert len(trail(order)) == 2


def test_staff_cancel_over_the_api_cancels_the_payment_intent(
    fake_gateway: FakeGateway, coupon_order: tuple[Order, dict[str, Any]]
) -> None:
    # given
    order, intent = coupon_order
    staff = token_client(make_user("staff", roles=["Service account"]))

    # when
    response = staff.post(f"/api/v1/orders/{order.pk}/cancel/", format="json")

    # then
    assert response.status_code == 200
    body = response.json()
    assert (body["status"], body["payment_intent_cancel"]) == ("canceled", "canceled")
    assert fake_gateway.calls_of("payment_intent_cancel") == [cancel_call(order)]
    assert fake_gateway.objects[intent["id"]]["status"] == "canceled"
    assert OrderStatusChange.objects.get(order=order, to_status="canceled").actor == "staff"


# --- unknown outcomes: the next expiry pass, same key ----------------------------------------------
def test_an_unknown_outcome_is_retried_by_the_next_pass_with_the_same_key(
    fake_gateway: FakeGateway, coupon_order: tuple[Order, dict[str, Any]]
) -> None:
    # given: Stripe times out on the first cancel
    order, intent = coupon_order
    fake_gateway.cancel_errors = [unknown()]

    # when
    first = orders_expire(older_than_seconds=0)

    # then: the order is canceled (committed), its PaymentIntent still to cancel
    order.refresh_from_db()
    assert first == 1
    assert (order.status, order.payment_intent_cancel) == ("canceled", "pending")
    assert fake_gateway.objects[intent["id"]]["status"] == "requires_payment_method"

    # when: the next passes
    second = orders_expire(older_than_seconds=0)
    third = orders_expire(older_than_seconds=0)

    # then: one retry, same key and parameters, and it is done
    order.refresh_from_db()
    assert (second, third) == (0, 0)
    assert fake_gateway.calls_of("payment_intent_cancel") == [cancel_call(order)] * 2
    assert order.payment_intent_cancel == "canceled"
    assert fake_gateway.objects[intent["id"]]["status"] == "canceled"
    assert bal("coupons:LATE") == 1000
    assert len(trail(order)) == 2


def test_an_unknown_outcome_that_did_cancel_is_resolved_by_looking_it_up(
    fake_gateway: FakeGateway, coupon_order: tuple[Order, dict[str, Any]]
) -> None:
    # given: Stripe canceled it, but the answer was lost
    order, intent = coupon_order
    fake_gateway.cancel_errors = [unknown()]
    orders_expire(older_than_seconds=0)
    fake_gateway.objects[intent["id"]]["status"] = "canceled"
    fake_gateway.calls.clear()

    # when
    orders_expire(older_than_seconds=0)

    # then: Stripe refuses to cancel a canceled PaymentIntent; the lookup settles it
    order.refresh_from_db()
    assert [name for name, _ in fake_gateway.calls] == [
        "payment_intent_cancel",
        "payment_intent_retrieve",
    ]
    assert (order.status, order.payment_intent_cancel) == ("canceled", "canceled")


def test_a_processing_payment_intent_stays_pending(
    fake_gateway: FakeGateway, coupon_order: tuple[Order, dict[str, Any]]
) -> None:
    # given: a payment in flight at Stripe (it may still succeed)
    order, intent = coupon_order
    intent["status"] = "processing"
    books = transactions_list().count()

    # when
    orders_expire(older_than_seconds=0)

    # then
    order.refresh_from_db()
    assert (order.status, order.payment_intent_cancel) == ("canceled", "pending")
    assert [name for name, _ in fake_gateway.calls][-2:] == [
        "payment_intent_cancel",
        "payment_intent_retrieve",
    ]
    # only the coupon's release was written
    assert transactions_list().count() == books + 1
    assert transactions_list(reference=f"coupon-release:{order.pk}").count() == 1
    assert bal(order.ledger_address) == 0


def test_another_refusal_is_recorded_for_staff_and_not_retried(
    fake_gateway: FakeGateway, coupon_order: tuple[Order, dict[str, Any]]
) -> None:
    # given: Stripe does not know the PaymentIntent (wrong account?)
    order, intent = coupon_order
    fake_gateway.cancel_errors = [
        ProviderObjectNotFound(
            "No such payment_intent",
            operation="payment_intent_cancel",
            stripe_code="resource_missing",
            provider_status=404,
        )
    ]

    # when
    orders_expire(older_than_seconds=0)
    orders_expire(older_than_seconds=0)

    # then
    order.refresh_from_db()
    assert (order.status, order.payment_intent_cancel) == ("canceled", "failed")
    assert len(fake_gateway.calls_of("payment_intent_cancel")) == 1
    anomaly = Anomaly.objects.get(kind="payment_intent_cancel_refused")
    assert (anomaly.stripe_object, anomaly.order_id) == (intent["id"], order.pk)
    assert anomaly.details == {"stripe_code": "resource_missing", "provider_status": 404}


# --- a PaymentIntent that had succeeded: the late payment is honoured -----------------------------
def test_a_payment_made_before_the_cancel_is_booked_and_the_webhook_changes_nothing(
    fake_gateway: FakeGateway, coupon_order: tuple[Order, dict[str, Any]]
) -> None:
    # given: the customer paid, the webhook is late
    order, intent = coupon_order
    ch = paid_at_stripe(fake_gateway, order, intent)

    # when: the order expires
    expired = orders_expire(older_than_seconds=0)

    # then: Stripe cannot cancel it; the payment is booked and the order is paid
    order.refresh_from_db()
    assert expired == 1
    assert [name for name, _ in fake_gateway.calls][-3:] == [
        "payment_intent_cancel",
        "payment_intent_retrieve",
        "charge_retrieve",
    ]
    assert (order.status, order.payment_intent_cancel) == ("paid", "succeeded")
    assert (order.charge_id, order.amount_paid) == (ch["id"], 1200)
    assert order.coupon_state == Order.CouponState.CAPTURED
    assert trail(order) == [
        ("created", "pending_payment"),
        ("pending_payment", "canceled"),
        ("canceled", "paid"),
    ]
    # the coupon went back at the cancel, and was taken from the campaign again at payment
    assert bal("coupons:LATE") == 700
    assert bal(order.ledger_address) == 1500
    assert bal("stripe:balance") == -(1200 - card_fee(1200))
    assert transactions_list(reference=f"payment:{ch['id']}").count() == 1
    books = transactions_list().count()

    # when: the webhook arrives after all
    outcome = process(event("payment_intent.succeeded", intent))

    # then: a replay
    order.refresh_from_db()
    assert outcome.status == "processed"
    assert transactions_list().count() == books
    assert bal(order.ledger_address) == 1500
    assert bal("coupons:LATE") == 700
    assert order.status == "paid"


def test_a_late_payment_whose_charge_is_not_ready_is_booked_by_the_next_pass(
    fake_gateway: FakeGateway, coupon_order: tuple[Order, dict[str, Any]]
) -> None:
    # given: paid, but Stripe has no balance transaction for the charge yet
    order, intent = coupon_order
    ch = paid_at_stripe(fake_gateway, order, intent, with_balance_transaction=False)

    # when
    orders_expire(older_than_seconds=0)

    # then: canceled, nothing booked, still to resolve
    order.refresh_from_db()
    assert (order.status, order.payment_intent_cancel) == ("canceled", "pending")
    assert transactions_list(reference=f"payment:{ch['id']}").count() == 0
    assert bal("coupons:LATE") == 1000

    # when: the balance transaction exists, and the next pass runs
    fake_gateway.objects[ch["id"]] = charge(
        amount=1200, payment_intent_id=intent["id"], order_id=order.pk, charge_id=ch["id"]
    )
    orders_expire(older_than_seconds=0)

    # then
    order.refresh_from_db()
    assert (order.status, order.payment_intent_cancel) == ("paid", "succeeded")
    assert transactions_list(reference=f"payment:{ch['id']}").count() == 1
    assert bal(order.ledger_address) == 1500
    assert bal("coupons:LATE") == 700


def test_a_late_payment_booked_by_its_webhook_first_needs_no_more_stripe_calls(
    fake_gateway: FakeGateway, coupon_order: tuple[Order, dict[str, Any]]
) -> None:
    # given: the cancel's outcome was unknown, then the customer's payment was booked
    order, intent = coupon_order
    fake_gateway.cancel_errors = [unknown()]
    orders_expire(older_than_seconds=0)
    ch = pay(fake_gateway, order, intent)
    fake_gateway.calls.clear()

    # when
    orders_expire(older_than_seconds=0)

    # then
    order.refresh_from_db()
    assert fake_gateway.calls == []
    assert (order.status, order.payment_intent_cancel) == ("paid", "succeeded")
    assert transactions_list(reference=f"payment:{ch['id']}").count() == 1
    assert bal(order.ledger_address) == 1500


def test_staff_cancel_of_an_order_paid_at_stripe_ends_paid(
    fake_gateway: FakeGateway, coupon_order: tuple[Order, dict[str, Any]]
) -> None:
    # given
    order, intent = coupon_order
    paid_at_stripe(fake_gateway, order, intent)

    # when
    result = order_cancel(order_id=order.pk, note="customer called", actor="ann")

    # then: the payment is honoured (refund it if the customer wants the money back)
    assert (result.status, result.payment_intent_cancel) == ("paid", "succeeded")
    assert bal(order.ledger_address) == 1500
    with pytest.raises(InvalidState) as refused:
        order_cancel(order_id=order.pk)
    assert refused.value.code == "order_paid"


# --- canceled while the PaymentIntent was being created ---------------------------------------------
def test_an_order_canceled_while_its_payment_intent_was_created_cancels_it_too(
    fake_gateway: FakeGateway, monkeypatch: pytest.MonkeyPatch
) -> None:
    # given: the order is canceled between Stripe's answer and its recording
    order = order_create(restaurant_id=RestaurantFactory().pk, subtotal=1500, delivery_fee=0)
    real_create = fake_gateway.payment_intent_create

    def create_then_cancel(**kwargs: Any) -> dict[str, Any]:
        intent = real_create(**kwargs)
        order_cancel(order_id=order.pk, note="expired", actor="expiry")
        return intent

    monkeypatch.setattr(fake_gateway, "payment_intent_create", create_then_cancel)

    # when
    with pytest.raises(InvalidState) as refused:
        order_payment_intent_create(order_id=order.pk)

    # then
    order.refresh_from_db()
    assert refused.value.code == "order_canceled"
    assert order.payment_intent_id.startswith("pi_")
    assert (order.status, order.payment_intent_cancel) == ("canceled", "canceled")
    assert fake_gateway.objects[order.payment_intent_id]["status"] == "canceled"
    assert fake_gateway.calls_of("payment_intent_cancel") == [cancel_call(order)]


# --- the database rule ------------------------------------------------------------------------------
def test_a_payment_intent_cancel_needs_a_payment_intent() -> None:
    # given
    order = order_create(restaurant_id=RestaurantFactory().pk, subtotal=1500, delivery_fee=0)
    rows = Order.objects.filter(pk=order.pk)

    # when / then
    with pytest.raises(IntegrityError), transaction.atomic():
        rows.update(payment_intent_cancel="pending")
    assert rows.get().payment_intent_cancel == "none"


def test_a_fake_refusal_looks_like_stripes(fake_gateway: FakeGateway) -> None:
    # given: the fake's 400 is what the seam raises for Stripe's (see test_stripe_api)
    intent = fake_gateway.add({"id": "pi_fake_done", "status": "succeeded"})

    # when
    with pytest.raises(InvalidRequest) as refused:
        fake_gateway.payment_intent_cancel(
            payment_intent_id=intent["id"], idempotency_key="pi-cancel:1", reason=None
        )

    # then
    assert refused.value.stripe_code == "payment_intent_unexpected_state"
    assert refused.value.provider_status == 400


# --- against the Stripe emulator (real HTTP through the seam) ----------------------------------------
@pytest.fixture
def stripe_emulator(settings: Any) -> Iterator[EmulatorServer]:
    """A local Stripe, no webhooks: what happens is only what the services do."""
    server = EmulatorServer(port=0)
    server.start()
    settings.STRIPE_API_BASE = server.url
    yield server
    server.stop()


def test_expiry_against_the_emulator_cancels_the_unpaid_and_books_the_paid(
    stripe_emulator: EmulatorServer,
) -> None:
    # given: two expired orders; the customer paid the second one at Stripe (no webhook)
    restaurant = restaurant_onboard(name="Pho 99", with_stripe_account=False)
    unpaid, unpaid_intent = order_place(restaurant_id=restaurant.pk, subtotal=1500, delivery_fee=0)
    paid, paid_intent = order_place(restaurant_id=restaurant.pk, subtotal=2000, delivery_fee=500)
    assert customer_pays(stripe_emulator, paid_intent["id"])

    # when
    expired = orders_expire(older_than_seconds=0)

    # then: the unpaid one is canceled at Stripe
    unpaid.refresh_from_db()
    paid.refresh_from_db()
    assert expired == 2
    assert (unpaid.status, unpaid.payment_intent_cancel) == ("canceled", "canceled")
    at_stripe = stripe_emulator.state.store.objects[unpaid_intent["id"]]
    assert (at_stripe["status"], at_stripe["cancellation_reason"]) == ("canceled", "abandoned")
    # and the paid one, which Stripe refused to cancel, is booked and paid
    assert (paid.status, paid.payment_intent_cancel) == ("paid", "succeeded")
    assert stripe_emulator.state.store.objects[paid_intent["id"]]["status"] == "succeeded"
    assert (paid.amount_paid, paid.stripe_fee) == (2500, emulator_card_fee(2500))
    assert bal(paid.ledger_address) == 2500
    assert transactions_list(reference=f"payment:{paid.charge_id}").count() == 1
