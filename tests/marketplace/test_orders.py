"""Placing orders, coupons, delivery: the services, with Stripe faked at the seam."""

from __future__ import annotations

from typing import Any

import pytest
from django.db import IntegrityError
from django.forms.models import model_to_dict

from ledger.selectors import account_metadata_get, balance_get, transactions_list
from marketplace.models import Customer, Order, OrderStatusChange
from marketplace.services import orders
from marketplace.services.campaigns import campaign_fund, campaign_pause
from marketplace.services.errors import (
    CampaignOverBudget,
    CouponExhausted,
    CouponUnavailable,
    InvalidInput,
    InvalidState,
    NotFound,
)
from marketplace.services.orders import (
    order_create,
    order_deliver,
    order_payment_intent_create,
    order_place,
    order_rider_assign,
    orders_expire,
)
from marketplace.services.parties import restaurant_commission_set
from tests.marketplace.factories import CampaignFactory, RestaurantFactory, RiderFactory
from tests.marketplace.fakes import FakeGateway, card_fee, fake_gateway
from tests.marketplace.flows import pay, placed_order

__all__ = ["fake_gateway"]

pytestmark = pytest.mark.django_db
USD = "USD/2"


def bal(address: str) -> int:
    return balance_get(address=address, asset=USD)


def test_restaurant_onboarding_writes_the_commission_to_the_ledger() -> None:
    # when
    restaurant = RestaurantFactory(commission="12.5%")
    # then
    assert account_metadata_get(address=restaurant.ledger_address) == {
        "kind": "restaurant",
        "commission": "12.5%",
    }


def test_commission_change_updates_column_and_metadata() -> None:
    # given
    restaurant = RestaurantFactory()
    # when
    restaurant_commission_set(restaurant_id=restaurant.pk, commission="18%")
    # then
    restaurant.refresh_from_db()
    assert restaurant.commission == "18%"
    assert account_metadata_get(address=restaurant.ledger_address)["commission"] == "18%"


@pytest.mark.parametrize("bad", ["101%", "abc", "1/0", "-5%", ""])
def test_commission_must_be_a_portion(bad: str) -> None:
    with pytest.raises(InvalidInput):
        RestaurantFactory(commission=bad)


def test_order_with_coupon_reserves_the_discount_in_the_same_transaction(
    fake_gateway: FakeGateway,
) -> None:
    # given: 25% off, capped at 400
    restaurant = RestaurantFactory()
    campaign = CampaignFactory(code="SPRING", percent_off="25%", per_order_cap=400, funding=10_000)
    # when
    order = order_create(
        restaurant_id=restaurant.pk, subtotal=1000, delivery_fee=300, coupon_code="spring"
    )
    # then
    assert (order.discount, order.total) == (250, 1050)
    assert order.coupon_state == Order.CouponState.RESERVED
    assert order.campaign == campaign
    assert bal("coupons:SPRING") == 9750
    assert bal(f"orders:{order.pk}:coupon") == 250
    tx = transactions_list(reference=f"coupon-reserve:{order.pk}").get()
    assert tx.metadata == {
        "order_id": str(order.pk),
        "campaign": "SPRING",
        "flow": "coupon_reserve",
    }
    assert fake_gateway.calls == []


def test_coupon_discount_is_capped_per_order() -> None:
    # given
    restaurant = RestaurantFactory()
    CampaignFactory(code="CAP", percent_off="50%", per_order_cap=400, funding=10_000)
    # when
    order = order_create(
        restaurant_id=restaurant.pk, subtotal=3000, delivery_fee=0, coupon_code="CAP"
    )
    # then
    assert order.discount == 400


def test_exhausted_campaign_refuses_the_order_and_creates_nothing() -> None:
    # given: 300 left, the discount would be 500
    restaurant = RestaurantFactory()
    CampaignFactory(code="LAST", per_order_cap=500, funding=300)
    # when
    with pytest.raises(CouponExhausted) as raised:
        order_create(restaurant_id=restaurant.pk, subtotal=2000, delivery_fee=0, coupon_code="LAST")
    # then
    assert raised.value.extra["available"] == 300
    assert Order.objects.count() == 0
    assert bal("coupons:LAST") == 300


def test_campaign_last_dollars_can_be_spent_exactly() -> None:
    # given
    restaurant = RestaurantFactory()
    CampaignFactory(code="EXACT", per_order_cap=500, funding=1000)
    # when
    first = order_create(
        restaurant_id=restaurant.pk, subtotal=2000, delivery_fee=0, coupon_code="EXACT"
    )
    second = order_create(
        restaurant_id=restaurant.pk, subtotal=2000, delivery_fee=0, coupon_code="EXACT"
    )
    # then
    assert (first.discount, second.discount) == (500, 500)
    assert bal("coupons:EXACT") == 0
    with pytest.raises(CouponExhausted):
        order_create(
            restaurant_id=restaurant.pk, subtotal=2000, delivery_fee=0, coupon_code="EXACT"
        )


def test_paused_or_unknown_coupon_is_refused() -> None:
    # given
    restaurant = RestaurantFactory()
    campaign = CampaignFactory(code="PAUSED", funding=1000)
    campaign_pause(campaign_id=campaign.pk)
    # then
    with pytest.raises(CouponUnavailable):
        order_create(
            restaurant_id=restaurant.pk, subtotal=2000, delivery_fee=0, coupon_code="PAUSED"
        )
    with pytest.raises(CouponUnavailable):
        order_create(restaurant_id=restaurant.pk, subtotal=2000, delivery_fee=0, coupon_code="NOPE")
    assert Order.objects.count() == 0


def test_campaign_cannot_be_funded_beyond_its_budget() -> None:
    # given
    campaign = CampaignFactory(budget=1000, funding=800)
    # when
    with pytest.raises(CampaignOverBudget):
        campaign_fund(campaign_id=campaign.pk, amount=201)
    funding = campaign_fund(campaign_id=campaign.pk, amount=200)
    # then
    campaign.refresh_from_db()
    assert (campaign.funded, funding.n) == (1000, 2)
    assert bal(campaign.ledger_address) == 1000
    assert transactions_list(reference=f"campaign-fund:{campaign.code}:2").count() == 1


@pytest.mark.parametrize(
    ("subtotal", "fee", "code"),
    [(0, 100, "invalid_input"), (10, 20, "order_total_too_small"), (1000, -1, "invalid_input")],
)
def test_order_amounts_are_validated(subtotal: int, fee: int, code: str) -> None:
    restaurant = RestaurantFactory()
    with pytest.raises(InvalidInput) as raised:
        order_create(restaurant_id=restaurant.pk, subtotal=subtotal, delivery_fee=fee)
    assert raised.value.code == code
    assert Order.objects.count() == 0


def test_order_for_unknown_restaurant() -> None:
    with pytest.raises(NotFound):
        order_create(restaurant_id=999_999, subtotal=1000, delivery_fee=0)


def test_payment_intent_carries_order_id_and_transfer_group(fake_gateway: FakeGateway) -> None:
    # given
    restaurant = RestaurantFactory()
    # when
    order, intent = placed_order(
        fake_gateway, restaurant_id=restaurant.pk, subtotal=1800, delivery_fee=200
    )
    # then
    (call,) = fake_gateway.calls_of("payment_intent_create")
    assert call == {
        "amount": 2000,
        "asset": USD,
        "idempotency_key": f"order:{order.pk}:payment_intent",
        "metadata": {"order_id": str(order.pk), "restaurant": restaurant.ledger_address},
        "transfer_group": f"ORDER_{order.pk}",
    }
    assert order.payment_intent_id == intent["id"]
    assert order.status == Order.Status.PENDING_PAYMENT


def test_delivery_of_an_unpaid_order_is_refused(fake_gateway: FakeGateway) -> None:
    # given
    restaurant, rider = RestaurantFactory(), RiderFactory()
    order, _ = placed_order(
        fake_gateway, restaurant_id=restaurant.pk, subtotal=1800, delivery_fee=200
    )
    # when
    with pytest.raises(InvalidState) as raised:
        order_deliver(order_id=order.pk, rider_id=rider.pk)
    # then
    assert raised.value.code == "order_not_paid"
    assert transactions_list(reference=f"delivery:{order.pk}").count() == 0


def test_delivery_splits_and_is_idempotent(fake_gateway: FakeGateway) -> None:
    # given: commission 12.5% on a subtotal of 1999
    restaurant, rider = RestaurantFactory(commission="12.5%"), RiderFactory()
    order, intent = placed_order(
        fake_gateway, restaurant_id=restaurant.pk, subtotal=1999, delivery_fee=450
    )
    pay(fake_gateway, order, intent)
    # when
    order_deliver(order_id=order.pk, rider_id=rider.pk)
    order_deliver(order_id=order.pk, rider_id=rider.pk)
    # then: 12.5% of 1999 = 249.875 -> 249 (+1 leftover to the first clause: 250), 1749
    assert bal(rider.ledger_address) == 450
    assert bal("platform:fees") == 250
    assert bal(restaurant.ledger_address) == 1749
    assert bal(order.ledger_address) == 0
    assert transactions_list(reference=f"delivery:{order.pk}").count() == 1
    transitions = list(
        OrderStatusChange.objects.filter(order=order).values_list("from_status", "to_status")
    )
    assert transitions == [
        ("created", "pending_payment"),
        ("pending_payment", "paid"),
        ("paid", "delivered"),
    ]
    assert bal("platform:stripe_fees") == -card_fee(2449)


def test_expired_orders_release_their_coupon(fake_gateway: FakeGateway) -> None:
    # given
    restaurant = RestaurantFactory()
    CampaignFactory(code="EXP", per_order_cap=300, funding=1000)
    order, _ = placed_order(
        fake_gateway, restaurant_id=restaurant.pk, subtotal=1500, delivery_fee=0, coupon_code="EXP"
    )
    # when
    expired = orders_expire(older_than_seconds=0)
    # then
    order.refresh_from_db()
    assert expired == 1
    assert order.status == Order.Status.CANCELED
    assert order.coupon_state == Order.CouponState.RELEASED
    assert bal("coupons:EXP") == 1000


def test_late_payment_after_expiry_takes_the_discount_from_the_campaign_again(
    fake_gateway: FakeGateway,
) -> None:
    # given: the order expired and released its coupon
    restaurant = RestaurantFactory()
    CampaignFactory(code="LATE", per_order_cap=300, funding=1000)
    order, intent = placed_order(
        fake_gateway, restaurant_id=restaurant.pk, subtotal=1500, delivery_fee=0, coupon_code="LATE"
    )
    orders_expire(older_than_seconds=0)
    # when: the customer's payment still goes through
    pay(fake_gateway, order, intent)
    # then: the order is honoured
    assert order.status == Order.Status.PAID
    assert order.coupon_state == Order.CouponState.CAPTURED
    assert bal(order.ledger_address) == 1500
    assert bal("coupons:LATE") == 700


def test_expiry_task_is_scheduled_and_runs(fake_gateway: FakeGateway) -> None:
    # given
    from django.conf import settings

    from marketplace.services.tasks import orders_expire_task

    restaurant = RestaurantFactory()
    placed_order(fake_gateway, restaurant_id=restaurant.pk, subtotal=1500, delivery_fee=0)
    # when: nothing is older than the default TTL (1 h)
    expired = orders_expire_task.apply().get()
    # then
    assert expired == 0
    assert settings.CELERY_BEAT_SCHEDULE["marketplace-orders-expire"]["task"] == (
        "marketplace.orders_expire"
    )


@pytest.mark.django_db(transaction=True)
def test_delivery_to_an_unknown_rider_changes_nothing(fake_gateway: FakeGateway) -> None:
    """Transactional: the rider's foreign key is checked when the delivery commits."""
    # given
    restaurant = RestaurantFactory()
    order, intent = placed_order(
        fake_gateway, restaurant_id=restaurant.pk, subtotal=1000, delivery_fee=100
    )
    pay(fake_gateway, order, intent)
    # when
    with pytest.raises(NotFound):
        order_deliver(order_id=order.pk, rider_id=987_654)
    # then
    order.refresh_from_db()
    assert order.status == Order.Status.PAID
    assert transactions_list(reference=f"delivery:{order.pk}").count() == 0
    assert bal(order.ledger_address) == 1100


# --- placing in few statements: the same rows as the ORM and the locked path write ----------


def _row(order_id: int) -> dict[str, Any]:
    return model_to_dict(Order.objects.get(pk=order_id)) | {"id": order_id}


@pytest.mark.parametrize(
    "extra",
    [{}, {"customer_email": "c@example.com"}, {"customer_name": "Ana"}, {"coupon": True}],
    ids=["plain", "email", "name", "coupon"],
)
def test_placing_writes_and_answers_the_rows_the_orm_would(
    fake_gateway: FakeGateway,
    extra: dict[str, Any],
    django_assert_num_queries: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # given: a new order's PaymentIntent is recorded in one statement, not the locked path
    restaurant = RestaurantFactory()
    monkeypatch.setattr(orders, "order_lock", None)
    if extra.pop("coupon", False):
        extra["coupon_code"] = CampaignFactory(funding=10_000, per_order_cap=300).code.lower()
    # when
    order, intent = order_place(
        restaurant_id=restaurant.pk, subtotal=1800, delivery_fee=200, **extra
    )
    # then: the answer is the row as committed, field for field
    assert _row(order.pk) == model_to_dict(order) | {"id": order.pk}
    assert order.status == Order.Status.PENDING_PAYMENT
    assert order.payment_intent_id == intent["id"]
    assert (order.asset, order.total) == (USD, 2000 - order.discount)
    # the status change audited as order_transition audits it
    changes = list(
        OrderStatusChange.objects.filter(order=order).values_list(
            "from_status", "to_status", "actor", "note"
        )
    )
    assert changes == [("created", "pending_payment", "", intent["id"])]
    # the campaign the view shows is the one placed with, read no more
    with django_assert_num_queries(0):
        coupon = order.campaign.code if order.campaign_id else None
    assert coupon == (extra["coupon_code"].upper() if "coupon_code" in extra else None)
    if extra.get("customer_email") or extra.get("customer_name"):
        assert order.customer is not None
        assert order.customer.email == extra.get("customer_email", "")
    else:
        assert order.customer_id is None


def test_a_second_payment_intent_request_returns_the_same_one_and_audits_nothing(
    fake_gateway: FakeGateway,
) -> None:
    # given: an order whose PaymentIntent is recorded
    order, intent = order_place(restaurant_id=RestaurantFactory().pk, subtotal=1800, delivery_fee=0)
    # when: the client asks again (the locked path: the order is not `created` any more)
    again = order_payment_intent_create(order_id=order.pk)
    # then: the same PaymentIntent (same key), nothing changed or audited again
    assert again["id"] == intent["id"]
    assert _row(order.pk) == model_to_dict(order) | {"id": order.pk}
    assert OrderStatusChange.objects.filter(order=order).count() == 1
    keys = {c["idempotency_key"] for c in fake_gateway.calls_of("payment_intent_create")}
    assert keys == {f"order:{order.pk}:payment_intent"}


def test_a_customer_is_created_in_the_order_s_transaction(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # given: the order's insert fails after its customer was created
    restaurant = RestaurantFactory()

    def refused(order: Order) -> None:
        raise IntegrityError("refused")

    monkeypatch.setattr(orders, "_order_insert", refused)
    # when
    with pytest.raises(IntegrityError):
        order_create(
            restaurant_id=restaurant.pk, subtotal=1000, delivery_fee=0, customer_email="c@x.co"
        )
    # then: neither is left
    assert not Order.objects.filter(restaurant=restaurant).exists()
    assert not Customer.objects.filter(email="c@x.co").exists()


def _paid(fake_gateway: FakeGateway) -> Order:
    campaign = CampaignFactory(funding=10_000)
    order, intent = order_place(
        restaurant_id=RestaurantFactory().pk,
        subtotal=1800,
        delivery_fee=200,
        coupon_code=campaign.code,
    )
    pay(fake_gateway, order, intent)
    return order


@pytest.mark.parametrize("assigned_before", [False, True])
def test_a_delivery_locks_and_audits_in_the_split_s_transaction(
    fake_gateway: FakeGateway, monkeypatch: pytest.MonkeyPatch, assigned_before: bool
) -> None:
    # given: a paid order (with a coupon), its rider given now or assigned before
    order, rider = _paid(fake_gateway), RiderFactory()
    if assigned_before:
        order_rider_assign(order_id=order.pk, rider_id=rider.pk)
    monkeypatch.setattr(orders, "order_lock", None)  # the one-statement path only
    # when
    delivered = order_deliver(
        order_id=order.pk, rider_id=None if assigned_before else rider.pk, actor="staff-1"
    )
    # then: the answer is the row as committed, with its restaurant and campaign
    assert _row(order.pk) == model_to_dict(delivered) | {"id": order.pk}
    assert (delivered.status, delivered.rider_id) == ("delivered", rider.pk)
    assert delivered.delivered_at is not None
    assert delivered.campaign is not None and delivered.campaign.pk == order.campaign_id
    last = OrderStatusChange.objects.filter(order=order).order_by("id").last()
    assert last is not None
    assert (last.from_status, last.to_status, last.actor, last.note) == (
        "paid",
        "delivered",
        "staff-1",
        "",
    )
    assert transactions_list(reference=f"delivery:{order.pk}").count() == 1
    assert bal(rider.ledger_address) == 200


def test_a_split_that_fails_leaves_the_order_paid_and_unaudited(
    fake_gateway: FakeGateway, monkeypatch: pytest.MonkeyPatch
) -> None:
    # given: the ledger refuses the split after the order's row was changed
    order, rider = _paid(fake_gateway), RiderFactory()
    changes = OrderStatusChange.objects.filter(order=order).count()

    def refused(*args: Any, **kwargs: Any) -> None:
        raise InvalidState("refused", code="refused")

    monkeypatch.setattr(orders, "flow_post", refused)
    # when
    with pytest.raises(InvalidState):
        order_deliver(order_id=order.pk, rider_id=rider.pk)
    # then: the change was rolled back with the split
    order.refresh_from_db()
    assert (order.status, order.rider_id, order.delivered_at) == ("paid", None, None)
    assert OrderStatusChange.objects.filter(order=order).count() == changes


def test_a_paid_order_without_a_rider_is_not_delivered(fake_gateway: FakeGateway) -> None:
    # given
    order = _paid(fake_gateway)
    # when
    with pytest.raises(InvalidState) as raised:
        order_deliver(order_id=order.pk)
    # then
    assert raised.value.code == "order_without_rider"
    order.refresh_from_db()
    assert order.status == "paid"
    assert transactions_list(reference=f"delivery:{order.pk}").count() == 0
