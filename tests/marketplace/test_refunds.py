"""Refunds: validation under the order's lock, the Stripe call after the commit, the ledger
written when Stripe confirms, failures undone. Stripe is faked at the seam."""

from __future__ import annotations

import pytest
from django.db import IntegrityError, transaction

from ledger.selectors import balance_get, transactions_list
from marketplace.models import Order, Refund
from marketplace.services.errors import InvalidInput, InvalidState, RefundTooLarge
from marketplace.services.orders import order_deliver
from marketplace.services.refunds import refund_issue, refund_request, refund_submit
from stripe_gateway.errors import InvalidRequest
from tests.marketplace.factories import RestaurantFactory, RiderFactory
from tests.marketplace.fakes import FakeGateway, fake_gateway, refund
from tests.marketplace.flows import drain, event, pay, placed_order, process

__all__ = ["fake_gateway"]

pytestmark = pytest.mark.django_db
USD = "USD/2"


def bal(address: str) -> int:
    return balance_get(address=address, asset=USD)


@pytest.fixture
def paid(fake_gateway: FakeGateway) -> tuple[Order, dict]:
    restaurant = RestaurantFactory()
    order, intent = placed_order(
        fake_gateway, restaurant_id=restaurant.pk, subtotal=2000, delivery_fee=500
    )
    ch = pay(fake_gateway, order, intent)
    return order, ch


def test_refund_bigger_than_paid_is_refused(fake_gateway: FakeGateway, paid: tuple) -> None:
    # given
    order, _ = paid
    # when
    with pytest.raises(RefundTooLarge) as raised:
        refund_issue(order_id=order.pk, amount=2501)
    # then: nothing recorded, Stripe never called
    assert raised.value.extra == {"refundable": 2500, "amount": 2501}
    assert Refund.objects.count() == 0
    assert fake_gateway.calls_of("refund_create") == []
    order.refresh_from_db()
    assert order.amount_refunded == 0


def test_refunds_cannot_add_up_beyond_what_was_paid(fake_gateway: FakeGateway, paid: tuple) -> None:
    # given
    order, _ = paid
    refund_issue(order_id=order.pk, amount=2000)
    # when
    with pytest.raises(RefundTooLarge) as raised:
        refund_issue(order_id=order.pk, amount=501)
    # then
    assert raised.value.extra["refundable"] == 500
    assert Refund.objects.count() == 1
    assert len(fake_gateway.calls_of("refund_create")) == 1


def test_refund_before_payment_is_refused(fake_gateway: FakeGateway) -> None:
    # given: placed, not paid
    restaurant = RestaurantFactory()
    order, _ = placed_order(
        fake_gateway, restaurant_id=restaurant.pk, subtotal=2000, delivery_fee=0
    )
    # when
    with pytest.raises(InvalidState) as raised:
        refund_issue(order_id=order.pk, amount=100)
    # then
    assert raised.value.code == "order_not_paid"
    assert Refund.objects.count() == 0
    assert fake_gateway.calls_of("refund_create") == []


def test_refund_is_created_at_stripe_with_its_key_and_booked_on_confirmation(
    fake_gateway: FakeGateway, paid: tuple
) -> None:
    # given
    order, ch = paid
    # when
    created = refund_issue(order_id=order.pk, amount=700, reason="cold")
    # then: submitted, not yet in the ledger
    (call,) = fake_gateway.calls_of("refund_create")
    assert call["idempotency_key"] == f"refund:{created.pk}"
    assert call["charge_id"] == ch["id"]
    assert call["metadata"] == {"refund_id": str(created.pk), "order_id": str(order.pk)}
    assert created.status == Refund.Status.SUBMITTED
    assert transactions_list(reference=f"refund:{created.stripe_refund_id}").count() == 0
    # when: Stripe confirms
    process(event("refund.created", fake_gateway.objects[created.stripe_refund_id]))
    # then
    created.refresh_from_db()
    assert created.status == Refund.Status.SUCCEEDED
    assert bal(order.ledger_address) == 1800
    tx = transactions_list(reference=f"refund:{created.stripe_refund_id}").get()
    assert tx.metadata["stripe_object"] == created.stripe_refund_id
    assert tx.metadata["flow"] == "refund_order"


def test_webhook_before_the_id_is_recorded_finds_the_refund_by_metadata(
    fake_gateway: FakeGateway, paid: tuple
) -> None:
    # given: the refund row exists, Stripe has the refund, we have not recorded its id yet
    order, ch = paid
    row = refund_request(order_id=order.pk, amount=300)
    stripe_refund = fake_gateway.add(
        refund(charge_id=ch["id"], amount=300, metadata={"refund_id": str(row.pk)})
    )
    # when
    process(event("refund.created", stripe_refund))
    # then
    row.refresh_from_db()
    assert (row.stripe_refund_id, row.status) == (stripe_refund["id"], "succeeded")
    assert bal(order.ledger_address) == 2200


def test_refund_event_before_its_payment_is_deferred_then_booked(fake_gateway: FakeGateway) -> None:
    # given: a refund (made in Stripe's dashboard) whose payment event has not been processed
    restaurant = RestaurantFactory()
    order, intent = placed_order(
        fake_gateway, restaurant_id=restaurant.pk, subtotal=2000, delivery_fee=0
    )
    from tests.marketplace.fakes import charge

    ch = fake_gateway.add(charge(amount=2000, payment_intent_id=intent["id"], order_id=order.pk))
    stripe_refund = fake_gateway.add(
        refund(charge_id=ch["id"], amount=500, payment_intent_id=intent["id"])
    )
    # when
    early = process(event("refund.created", stripe_refund))
    # then
    assert early.status == "deferred"
    assert transactions_list().filter(reference__startswith="refund:").count() == 0
    # when: the payment arrives, and the refund is retried
    intent.update(status="succeeded", latest_charge=ch["id"])
    process(event("payment_intent.succeeded", intent))
    drain()
    # then
    assert bal(order.ledger_address) == 1500
    assert transactions_list(reference=f"refund:{stripe_refund['id']}").count() == 1
    external = Refund.objects.get(stripe_refund_id=stripe_refund["id"])
    assert (external.bearer, external.status) == ("platform", "succeeded")


def test_refund_after_delivery_by_shares(fake_gateway: FakeGateway, paid: tuple) -> None:
    # given
    order, _ = paid
    rider = RiderFactory()
    order_deliver(order_id=order.pk, rider_id=rider.pk)
    # when
    row = refund_issue(
        order_id=order.pk, amount=999, bearer="shared", restaurant_share="1/3", rider_share="1/3"
    )
    process(event("refund.updated", fake_gateway.objects[row.stripe_refund_id]))
    # then
    row.refresh_from_db()
    assert (row.source, row.platform_share, row.restaurant_share, row.rider_share) == (
        "parties",
        "1/3",
        "1/3",
        "1/3",
    )
    assert bal("platform:losses") == -333
    assert bal(order.restaurant.ledger_address) == 1700 - 333
    assert bal(rider.ledger_address) == 500 - 333


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"bearer": "shared", "restaurant_share": "80%", "rider_share": "30%"}, "restaurant_share"),
        ({"bearer": "shared", "restaurant_share": "lots"}, "restaurant_share"),
        ({"bearer": "nobody"}, "bearer"),
        ({"amount": 0}, "amount"),
        ({"amount": 10.5}, "amount"),
    ],
)
def test_refund_input_is_validated(
    fake_gateway: FakeGateway, paid: tuple, kwargs: dict, field: str
) -> None:
    order, _ = paid
    with pytest.raises(InvalidInput) as raised:
        refund_issue(order_id=order.pk, **{"amount": 100, **kwargs})
    assert raised.value.extra["field"] == field
    assert Refund.objects.count() == 0


def test_double_submit_with_the_same_key_returns_the_first_refund(
    fake_gateway: FakeGateway, paid: tuple
) -> None:
    # given
    order, _ = paid
    first = refund_issue(order_id=order.pk, amount=400, request_key="form-1")
    # when
    second = refund_issue(order_id=order.pk, amount=400, request_key="form-1")
    # then
    assert second.pk == first.pk
    assert len(fake_gateway.calls_of("refund_create")) == 1
    order.refresh_from_db()
    assert order.amount_refunded == 400
    with pytest.raises(InvalidInput):
        refund_issue(order_id=order.pk, amount=401, request_key="form-1")


def test_stripe_refusal_fails_the_refund_and_releases_the_claim(
    fake_gateway: FakeGateway, paid: tuple
) -> None:
    # given
    order, _ = paid
    fake_gateway.refund_error = InvalidRequest("charge_disputed", operation="refund_create")
    # when
    with pytest.raises(InvalidRequest):
        refund_issue(order_id=order.pk, amount=400)
    # then
    row = Refund.objects.get()
    assert row.status == Refund.Status.FAILED
    order.refresh_from_db()
    assert order.amount_refunded == 0
    assert transactions_list().filter(reference__startswith="refund").count() == 0


def test_failed_refund_is_reverted_and_its_claim_released(
    fake_gateway: FakeGateway, paid: tuple
) -> None:
    # given: a refund Stripe accepted, booked, then failed
    order, _ = paid
    row = refund_issue(order_id=order.pk, amount=900)
    stripe_refund = fake_gateway.objects[row.stripe_refund_id]
    process(event("refund.created", stripe_refund))
    assert bal(order.ledger_address) == 1600
    # when
    stripe_refund.update(status="failed", failure_balance_transaction="txn_failure_1")
    process(event("refund.failed", stripe_refund))
    process(event("refund.updated", stripe_refund))
    # then
    row.refresh_from_db()
    order.refresh_from_db()
    assert row.status == Refund.Status.FAILED
    assert order.amount_refunded == 0
    assert bal(order.ledger_address) == 2500
    reverted = transactions_list(reference=f"refund-failed:{row.stripe_refund_id}").get()
    assert reverted.metadata["stripe_balance_transaction"] == "txn_failure_1"
    assert reverted.metadata["flow"] == "refund_failed"
    # a new refund may use the released amount
    refund_request(order_id=order.pk, amount=2500)


def test_submit_is_idempotent(fake_gateway: FakeGateway, paid: tuple) -> None:
    order, _ = paid
    row = refund_issue(order_id=order.pk, amount=100)
    refund_submit(refund_id=row.pk)
    assert len(fake_gateway.calls_of("refund_create")) == 1


def test_database_refuses_refunds_beyond_the_paid_amount(paid: tuple) -> None:
    order, _ = paid
    with pytest.raises(IntegrityError), transaction.atomic():
        Order.objects.filter(pk=order.pk).update(amount_refunded=2501)
