"""Refunds left `pending` (the Stripe call timed out, or the process died between the commit
and the call) are re-driven by the beat's sweeper with the SAME idempotency key; too old for
Stripe to still remember that key, they are flagged for staff, never sent again."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.conf import settings
from django.utils import timezone

from marketplace.models import Anomaly, Order, Refund
from marketplace.services.refunds import refund_issue, refund_request, refunds_sweep
from stripe_gateway.errors import InvalidRequest, OutcomeUnknown
from tests.marketplace.factories import RestaurantFactory
from tests.marketplace.fakes import FakeGateway, fake_gateway
from tests.marketplace.flows import pay, placed_order

__all__ = ["fake_gateway"]

pytestmark = pytest.mark.django_db


@pytest.fixture
def order(fake_gateway: FakeGateway) -> Order:
    restaurant = RestaurantFactory()
    order, intent = placed_order(
        fake_gateway, restaurant_id=restaurant.pk, subtotal=2000, delivery_fee=500
    )
    pay(fake_gateway, order, intent)
    return order


def _age(refund: Refund, seconds: float) -> None:
    Refund.objects.filter(pk=refund.pk).update(
        created_at=timezone.now() - timedelta(seconds=seconds)
    )


def test_a_refund_whose_stripe_call_timed_out_is_resubmitted_with_the_same_key(
    fake_gateway: FakeGateway, order: Order
) -> None:
    # given: Stripe's answer was lost; the refund stays pending with its claim on the order
    fake_gateway.refund_error = OutcomeUnknown("timeout", operation="refund_create")
    with pytest.raises(OutcomeUnknown):
        refund_issue(order_id=order.pk, amount=700)
    refund = Refund.objects.get()
    assert refund.status == Refund.Status.PENDING
    fake_gateway.refund_error = None
    _age(refund, settings.REFUNDS_SWEEP_GRACE + 1)
    # when
    swept = refunds_sweep()
    # then: sent again under the same key, and its re_ id recorded
    assert swept == 1
    calls = fake_gateway.calls_of("refund_create")
    assert [c["idempotency_key"] for c in calls] == [f"refund:{refund.pk}"] * 2
    assert calls[0] == calls[1]
    refund.refresh_from_db()
    assert refund.status == Refund.Status.SUBMITTED
    assert refund.stripe_refund_id.startswith("re_")
    # and a second pass has nothing left to do
    assert refunds_sweep() == 0
    assert len(fake_gateway.calls_of("refund_create")) == 2


def test_a_refund_committed_but_never_sent_is_sent_by_the_sweeper(
    fake_gateway: FakeGateway, order: Order
) -> None:
    # given: the process died after refund_request committed, before refund_submit
    refund = refund_request(order_id=order.pk, amount=500)
    _age(refund, settings.REFUNDS_SWEEP_GRACE + 1)
    # when
    assert refunds_sweep() == 1
    # then
    refund.refresh_from_db()
    assert refund.status == Refund.Status.SUBMITTED
    assert len(fake_gateway.calls_of("refund_create")) == 1


def test_a_fresh_pending_refund_is_left_to_its_own_request(
    fake_gateway: FakeGateway, order: Order
) -> None:
    # given: a refund whose own request may still be calling Stripe
    refund_request(order_id=order.pk, amount=500)
    # when
    swept = refunds_sweep()
    # then
    assert swept == 0
    assert fake_gateway.calls_of("refund_create") == []


def test_a_refund_older_than_stripes_key_memory_is_flagged_not_sent(
    fake_gateway: FakeGateway, order: Order
) -> None:
    # given: pending for longer than Stripe keeps idempotency keys: a new call could refund
    # the customer a second time
    refund = refund_request(order_id=order.pk, amount=500)
    _age(refund, settings.REFUNDS_SWEEP_MAX_AGE + 1)
    # when
    swept = refunds_sweep()
    refunds_sweep()
    # then: never sent; one anomaly for staff; the refund is untouched
    assert swept == 0
    assert fake_gateway.calls_of("refund_create") == []
    anomalies = Anomaly.objects.filter(kind="refund_stuck_pending")
    assert [a.stripe_object for a in anomalies] == [f"refund:{refund.pk}"]
    refund.refresh_from_db()
    assert refund.status == Refund.Status.PENDING
    order.refresh_from_db()
    assert order.amount_refunded == 500


def test_the_refund_sweeper_is_on_beat() -> None:
    entries = [e["task"] for e in settings.CELERY_BEAT_SCHEDULE.values()]
    assert "marketplace.refunds_sweep" in entries


def test_an_idempotency_conflict_is_not_taken_for_a_refusal(
    fake_gateway: FakeGateway, order: Order
) -> None:
    # given: Stripe answers 400 idempotency_error: an earlier request under this key exists,
    # so the refund may well have been made
    fake_gateway.refund_error = InvalidRequest(
        "Keys for idempotent requests can only be used with the same parameters",
        code="provider_idempotency_error",
        operation="refund_create",
    )
    # when
    with pytest.raises(InvalidRequest):
        refund_issue(order_id=order.pk, amount=700)
    # then: still pending with its claim on the order (not failed, not released)
    refund = Refund.objects.get()
    assert refund.status == Refund.Status.PENDING
    order.refresh_from_db()
    assert order.amount_refunded == 700
