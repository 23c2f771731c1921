"""Payments under asynchronous capture (`capture_method=automatic_async`, the pinned API
version's default): `payment_intent.succeeded` and `charge.succeeded` carry no balance
transaction; Stripe attaches it later and says so with `charge.updated`. Whatever the order of
the three events, with duplicates, and however late the balance transaction, the payment and
its fee are booked exactly once. Stripe is faked at the seam (what it says *now* is what the
handlers fetch); "hours later" is set on the rows' timestamps."""

from __future__ import annotations

import itertools
from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone

from ledger.selectors import balance_get, transactions_list
from marketplace.models import Order
from marketplace.services.settlement import payments_settle
from stripe_gateway.endpoints import required_events
from stripe_gateway.models import StripeEvent
from stripe_gateway.services import event_process
from tests.marketplace.factories import RestaurantFactory
from tests.marketplace.fakes import FakeGateway, card_fee, charge, fake_gateway
from tests.marketplace.flows import event, placed_order, process

__all__ = ["fake_gateway"]

pytestmark = pytest.mark.django_db
USD = "USD/2"
EVENTS = ("payment_intent.succeeded", "charge.succeeded", "charge.updated")


def bal(address: str) -> int:
    return balance_get(address=address, asset=USD)


def _order(fake: FakeGateway) -> tuple[Order, dict[str, Any], dict[str, Any]]:
    """An order paid at Stripe, its charge not settled yet (no balance transaction)."""
    order, intent = placed_order(
        fake, restaurant_id=RestaurantFactory().pk, subtotal=2500, delivery_fee=500
    )
    ch = fake.add(
        charge(
            amount=order.total,
            payment_intent_id=intent["id"],
            order_id=order.pk,
            with_balance_transaction=False,
        )
    )
    intent.update(status="succeeded", latest_charge=ch["id"])
    return order, intent, ch


def _settle(fake: FakeGateway, order: Order, ch: dict[str, Any]) -> None:
    """Stripe attaches the balance transaction."""
    settled = charge(
        amount=order.total,
        payment_intent_id=ch["payment_intent"],
        order_id=order.pk,
        charge_id=ch["id"],
    )
    fake.objects[ch["id"]] = settled


def _payload(name: str, intent: dict[str, Any], ch: dict[str, Any]) -> dict[str, Any]:
    return event(name, intent if name.startswith("payment_intent") else ch)


def _assert_booked_once(order: Order, ch: dict[str, Any]) -> None:
    order.refresh_from_db()
    assert order.status == Order.Status.PAID
    assert (order.charge_id, order.amount_paid, order.stripe_fee) == (
        ch["id"],
        3000,
        card_fee(3000),
    )
    assert transactions_list(reference=f"payment:{ch['id']}").count() == 1
    assert transactions_list().count() == 1
    assert bal(order.ledger_address) == 3000
    assert bal("platform:stripe_fees") == -card_fee(3000)
    assert bal("stripe:balance") == -(3000 - card_fee(3000))
    assert not StripeEvent.objects.exclude(status="processed").exists()


# What the platform endpoint receives of a payment: charge.succeeded, sent with
# payment_intent.succeeded and saying the same, is handled when it comes but not subscribed to.
SUBSCRIBED = ("payment_intent.succeeded", "charge.updated")
# Every order of the three events (an endpoint still sending all three) and of the two, with
# the balance transaction attached after any number of them.
CASES = [
    (order_of_events, settled_after)
    for events in (EVENTS, SUBSCRIBED)
    for order_of_events in itertools.permutations(events)
    for settled_after in range(len(events) + 1)
]


def test_the_endpoint_subscribes_to_two_of_the_three() -> None:
    assert tuple(e for e in EVENTS if e in required_events(connect=False)) == SUBSCRIBED


@pytest.mark.parametrize(("order_of_events", "settled_after"), CASES)
def test_every_order_of_events_books_the_payment_once_whenever_the_bt_is_attached(
    fake_gateway: FakeGateway, order_of_events: tuple[str, ...], settled_after: int
) -> None:
    # given: the events, each delivered twice; Stripe attaches the balance transaction after
    # `settled_after` of them were processed (all of them: after the last)
    order, intent, ch = _order(fake_gateway)
    deliveries = [_payload(name, intent, ch) for name in order_of_events]

    # when
    for index, payload in enumerate(deliveries):
        if index == settled_after:
            _settle(fake_gateway, order, ch)
        assert process(payload).status == "processed"
        assert process(dict(payload)).status == "duplicate"
        # a redelivery of the same Stripe event under a new id (Stripe's retries of a
        # resent event, a replay) is processed again and changes nothing
        assert process(_payload(order_of_events[index], intent, ch)).status == "processed"
    if settled_after == len(deliveries):
        # every event came before the attachment: the order waits, nothing is booked yet
        order.refresh_from_db()
        assert order.status == Order.Status.AWAITING_SETTLEMENT
        assert transactions_list().count() == 0
        _settle(fake_gateway, order, ch)
        # charge.updated (the attachment's own event) arrives
        assert process(_payload("charge.updated", intent, ch)).status == "processed"

    # then
    _assert_booked_once(order, ch)


@pytest.mark.parametrize("late_by", [timedelta(minutes=5), timedelta(hours=6)])
def test_a_balance_transaction_hours_late_still_books_through_the_sweeper(
    fake_gateway: FakeGateway, late_by: timedelta
) -> None:
    # given: both success events processed long ago, without a balance transaction; the
    # charge.updated that would book it never arrives
    order, intent, ch = _order(fake_gateway)
    process(_payload("payment_intent.succeeded", intent, ch))
    process(_payload("charge.succeeded", intent, ch))
    Order.objects.filter(pk=order.pk).update(paid_at=timezone.now() - late_by)
    # a sweep while Stripe has still not settled it changes nothing, gives nothing up
    assert payments_settle(grace=60).outcomes == {"awaiting_settlement": 1}
    assert transactions_list().count() == 0

    # when: Stripe attaches it, the next sweep runs
    _settle(fake_gateway, order, ch)
    result = payments_settle(grace=60)

    # then
    assert result.outcomes == {"booked": 1}
    _assert_booked_once(order, ch)
    # and a late charge.updated after that is a replay
    assert process(_payload("charge.updated", intent, ch)).status == "processed"
    _assert_booked_once(order, ch)


def test_the_sweeper_waits_its_grace_period(fake_gateway: FakeGateway) -> None:
    # given: just paid, not settled
    _, intent, ch = _order(fake_gateway)
    process(_payload("charge.succeeded", intent, ch))
    calls = len(fake_gateway.calls)

    # when
    result = payments_settle(grace=60)

    # then: charge.updated normally comes within seconds: no Stripe call yet
    assert result.checked == 0
    assert len(fake_gateway.calls) == calls


def test_an_awaiting_order_cannot_be_canceled_and_its_coupon_stays_held(
    fake_gateway: FakeGateway,
) -> None:
    # given
    from marketplace.services.errors import InvalidState
    from marketplace.services.orders import order_cancel, orders_expire

    order, intent, ch = _order(fake_gateway)
    process(_payload("payment_intent.succeeded", intent, ch))

    # when / then: the customer's money is real
    with pytest.raises(InvalidState):
        order_cancel(order_id=order.pk)
    orders_expire(older_than_seconds=0)
    order.refresh_from_db()
    assert order.status == Order.Status.AWAITING_SETTLEMENT


def test_a_deferred_event_is_not_failed_after_max_attempts_while_stripe_can_deliver(
    fake_gateway: FakeGateway, settings: Any
) -> None:
    # given: a refund event that needs the payment, which is still awaiting settlement
    from tests.marketplace.fakes import refund

    settings.STRIPE_EVENTS_MAX_ATTEMPTS = 3
    order, intent, ch = _order(fake_gateway)
    process(_payload("charge.succeeded", intent, ch))
    re = fake_gateway.add(refund(charge_id=ch["id"], amount=1000))
    payload = event("refund.created", re)
    process(payload)

    # when: retried many more times than the attempt limit
    for _ in range(6):
        StripeEvent.objects.filter(stripe_id=payload["id"]).update(next_attempt_at=timezone.now())
        outcome = event_process(event_id=payload["id"])
        assert outcome.status == "deferred"

    # then: still deferred (backing off), never failed; once settled it goes through
    row = StripeEvent.objects.get(stripe_id=payload["id"])
    assert row.status == "deferred" and row.next_attempt_at is not None
    _settle(fake_gateway, order, ch)
    assert payments_settle(grace=0).outcomes == {"booked": 1}
    StripeEvent.objects.filter(stripe_id=payload["id"]).update(next_attempt_at=timezone.now())
    assert event_process(event_id=payload["id"]).status == "processed"
    assert transactions_list(reference=f"refund:{re['id']}").count() == 1


def test_a_deferred_event_gives_up_only_past_the_horizon(
    fake_gateway: FakeGateway, settings: Any
) -> None:
    # given
    from tests.marketplace.fakes import refund

    settings.STRIPE_EVENTS_MAX_ATTEMPTS = 3
    _, intent, ch = _order(fake_gateway)
    process(_payload("charge.succeeded", intent, ch))
    re = fake_gateway.add(refund(charge_id=ch["id"], amount=1000))
    payload = event("refund.created", re)
    process(payload)

    # when: received more than STRIPE_EVENTS_DEFER_HORIZON ago
    StripeEvent.objects.filter(stripe_id=payload["id"]).update(
        received_at=timezone.now() - timedelta(days=3, seconds=1), next_attempt_at=timezone.now()
    )
    outcome = event_process(event_id=payload["id"])

    # then
    assert outcome.status == "failed"
    assert outcome.error.startswith("gave up after 259200 s")
