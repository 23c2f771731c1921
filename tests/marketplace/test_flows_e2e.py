"""Each money flow end to end: the real services, the Stripe emulator over HTTP, signed
webhooks into the live app, the inbox processing them, the ledger's books afterwards."""

from __future__ import annotations

from typing import Any

import pytest

from marketplace.models import Anomaly, Dispute, Order, Refund
from marketplace.services.campaigns import campaign_create, campaign_fund
from marketplace.services.orders import order_deliver, order_place
from marketplace.services.parties import restaurant_onboard, rider_onboard
from marketplace.services.refunds import refund_issue
from marketplace.services.treasury import topup_create
from stripe_emulator import card_fee
from stripe_gateway.models import StripeEvent
from tests.marketplace.e2e import bal, customer_pays, emulator, ledger_tx, postings, settle

__all__ = ["emulator"]

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]


@pytest.fixture
def parties(emulator: Any) -> dict[str, Any]:
    return {
        "restaurant": restaurant_onboard(name="Pho 99", commission="15%"),
        "rider": rider_onboard(name="Ana"),
    }


def paid_order(server: Any, restaurant: Any, **kwargs: Any) -> Order:
    order, intent = order_place(restaurant_id=restaurant.pk, **kwargs)
    assert customer_pays(server, intent["id"])
    settle(server)
    order.refresh_from_db()
    return order


def test_onboarding_creates_connected_accounts(parties: dict[str, Any]) -> None:
    # given / when: the fixture onboarded a restaurant and a rider
    restaurant, rider = parties["restaurant"], parties["rider"]
    # then
    assert restaurant.stripe_account_id.startswith("acct_")
    assert rider.stripe_account_id.startswith("acct_")
    assert restaurant.ledger_address == f"restaurants:{restaurant.pk:03d}"


def test_payment_captured_books_gross_and_fee(emulator: Any, parties: dict[str, Any]) -> None:
    # given
    restaurant = parties["restaurant"]
    # when
    order = paid_order(emulator, restaurant, subtotal=2000, delivery_fee=500)
    # then
    fee = card_fee(2500)
    assert order.status == Order.Status.PAID
    assert order.payment_intent_id.startswith("pi_")
    assert (order.amount_paid, order.stripe_fee) == (2500, fee)
    assert postings(f"payment:{order.charge_id}") == [
        ("stripe:balance", f"payments:{order.charge_id}", 2500),
        (f"payments:{order.charge_id}", f"orders:{order.pk}", 2500),
        ("platform:stripe_fees", "stripe:balance", fee),
    ]
    tx = ledger_tx(f"payment:{order.charge_id}")
    assert tx.metadata["stripe_object"] == order.charge_id
    assert tx.metadata["stripe_balance_transaction"].startswith("txn_")
    assert tx.metadata["flow"] == "payment"
    assert tx.metadata["order_id"] == str(order.pk)
    assert tx.metadata["payment_intent"] == order.payment_intent_id
    assert bal("stripe:balance") == -(2500 - fee)
    assert bal(f"orders:{order.pk}") == 2500
    assert bal(f"payments:{order.charge_id}") == 0
    intent = emulator.state.store.objects[order.payment_intent_id]
    assert intent["metadata"] == {
        "order_id": str(order.pk),
        "restaurant": restaurant.ledger_address,
    }
    assert intent["transfer_group"] == f"ORDER_{order.pk}"


def test_delivery_splits_fee_commission_and_restaurant(
    emulator: Any, parties: dict[str, Any]
) -> None:
    # given
    restaurant, rider = parties["restaurant"], parties["rider"]
    order = paid_order(emulator, restaurant, subtotal=2000, delivery_fee=500)
    # when
    order_deliver(order_id=order.pk, rider_id=rider.pk)
    # then
    assert postings(f"delivery:{order.pk}") == [
        (f"orders:{order.pk}", rider.ledger_address, 500),
        (f"orders:{order.pk}", "platform:fees", 300),
        (f"orders:{order.pk}", restaurant.ledger_address, 1700),
    ]
    assert bal(f"orders:{order.pk}") == 0
    order.refresh_from_db()
    assert order.status == Order.Status.DELIVERED


def test_coupon_reserved_at_order_and_joined_at_payment(
    emulator: Any, parties: dict[str, Any]
) -> None:
    # given: a $15,000 campaign, 20% off capped at $5
    restaurant, rider = parties["restaurant"], parties["rider"]
    campaign = campaign_create(code="LUNCH", budget=1_500_000, per_order_cap=500, percent_off="20%")
    campaign_fund(campaign_id=campaign.pk, amount=1_500_000)
    # when: an order of 3000 + 400 delivery with the coupon (discount 500: capped)
    order, intent = order_place(
        restaurant_id=restaurant.pk, subtotal=3000, delivery_fee=400, coupon_code="lunch"
    )
    # then: reserved at once
    assert (order.discount, order.total) == (500, 2900)
    assert bal("coupons:LUNCH") == 1_499_500
    assert bal(f"orders:{order.pk}:coupon") == 500
    # when: paid and delivered
    assert customer_pays(emulator, intent["id"])
    settle(emulator)
    order_deliver(order_id=order.pk, rider_id=rider.pk)
    # then: the restaurant is paid on the full subtotal; the campaign paid the discount
    order.refresh_from_db()
    assert order.coupon_state == Order.CouponState.CAPTURED
    assert bal(f"orders:{order.pk}:coupon") == 0
    assert bal(f"orders:{order.pk}") == 0
    assert bal(rider.ledger_address) == 400
    assert bal("platform:fees") == 450
    assert bal(restaurant.ledger_address) == 2550
    assert bal("stripe:balance") == -(2900 - card_fee(2900))
    assert bal("platform:marketing") == -1_500_000


def test_declined_payment_releases_the_coupon(emulator: Any, parties: dict[str, Any]) -> None:
    # given
    restaurant = parties["restaurant"]
    campaign = campaign_create(code="FREE", budget=10_000, per_order_cap=1000)
    campaign_fund(campaign_id=campaign.pk, amount=10_000)
    order, intent = order_place(
        restaurant_id=restaurant.pk, subtotal=1500, delivery_fee=300, coupon_code="FREE"
    )
    assert bal("coupons:FREE") == 9000
    # when
    assert not customer_pays(emulator, intent["id"], pm="pm_card_chargeDeclined")
    settle(emulator)
    # then
    order.refresh_from_db()
    assert order.status == Order.Status.PAYMENT_FAILED
    assert order.coupon_state == Order.CouponState.RELEASED
    assert bal("coupons:FREE") == 10_000
    assert bal(f"orders:{order.pk}:coupon") == 0
    assert postings(f"coupon-release:{order.pk}") == [
        (f"orders:{order.pk}:coupon", "coupons:FREE", 1000)
    ]
    assert bal("stripe:balance") == 0


def test_refund_at_loss_after_delivery(emulator: Any, parties: dict[str, Any]) -> None:
    # given
    restaurant, rider = parties["restaurant"], parties["rider"]
    order = paid_order(emulator, restaurant, subtotal=2000, delivery_fee=500)
    order_deliver(order_id=order.pk, rider_id=rider.pk)
    # when
    refund = refund_issue(order_id=order.pk, amount=800, bearer="platform", reason="cold food")
    settle(emulator)
    # then
    refund.refresh_from_db()
    assert refund.status == Refund.Status.SUCCEEDED
    assert refund.stripe_refund_id.startswith("re_")
    assert postings(f"refund:{refund.stripe_refund_id}") == [
        ("platform:losses", "stripe:balance", 800)
    ]
    tx = ledger_tx(f"refund:{refund.stripe_refund_id}")
    assert tx.metadata["stripe_object"] == refund.stripe_refund_id
    assert tx.metadata["stripe_balance_transaction"].startswith("txn_")
    assert bal("platform:losses") == -800
    assert bal(restaurant.ledger_address) == 1700
    assert bal("stripe:balance") == -(2500 - card_fee(2500)) + 800
    stripe_refund = emulator.state.store.objects[refund.stripe_refund_id]
    assert stripe_refund["amount"] == 800
    assert stripe_refund["metadata"]["refund_id"] == str(refund.pk)


def test_refund_borne_by_restaurant_and_shared(emulator: Any, parties: dict[str, Any]) -> None:
    # given
    restaurant, rider = parties["restaurant"], parties["rider"]
    order = paid_order(emulator, restaurant, subtotal=2000, delivery_fee=500)
    order_deliver(order_id=order.pk, rider_id=rider.pk)
    # when
    by_restaurant = refund_issue(order_id=order.pk, amount=1000, bearer="restaurant")
    shared = refund_issue(
        order_id=order.pk,
        amount=1001,
        bearer="shared",
        restaurant_share="50%",
        rider_share="30%",
    )
    settle(emulator)
    # then
    by_restaurant.refresh_from_db()
    shared.refresh_from_db()
    assert postings(f"refund:{by_restaurant.stripe_refund_id}") == [
        (restaurant.ledger_address, "stripe:balance", 1000)
    ]
    assert postings(f"refund:{shared.stripe_refund_id}") == [
        ("platform:losses", "stripe:balance", 201),
        (restaurant.ledger_address, "stripe:balance", 500),
        (rider.ledger_address, "stripe:balance", 300),
    ]
    assert bal(restaurant.ledger_address) == 1700 - 1000 - 500
    assert bal(rider.ledger_address) == 500 - 300
    order.refresh_from_db()
    assert order.amount_refunded == 2001


def test_refund_before_delivery_comes_from_the_order(
    emulator: Any, parties: dict[str, Any]
) -> None:
    # given
    restaurant, rider = parties["restaurant"], parties["rider"]
    order = paid_order(emulator, restaurant, subtotal=2000, delivery_fee=500)
    # when: refunded (even borne "by the restaurant") before delivery, then delivered
    refund = refund_issue(order_id=order.pk, amount=600, bearer="restaurant")
    settle(emulator)
    order_deliver(order_id=order.pk, rider_id=rider.pk)
    # then: the order paid the refund; the split is of what is left
    refund.refresh_from_db()
    assert refund.source == Refund.Source.ORDER
    assert postings(f"refund:{refund.stripe_refund_id}") == [
        (f"orders:{order.pk}", "stripe:balance", 600)
    ]
    assert postings(f"delivery:{order.pk}") == [
        (f"orders:{order.pk}", rider.ledger_address, 500),
        (f"orders:{order.pk}", "platform:fees", 210),
        (f"orders:{order.pk}", restaurant.ledger_address, 1190),
    ]
    assert bal(f"orders:{order.pk}") == 0


def test_failed_refund_is_undone(emulator: Any, parties: dict[str, Any]) -> None:
    # given: a card whose refunds fail after being accepted
    restaurant, rider = parties["restaurant"], parties["rider"]
    order, intent = order_place(restaurant_id=restaurant.pk, subtotal=2000, delivery_fee=500)
    assert customer_pays(emulator, intent["id"], pm="pm_card_refundFail")
    settle(emulator)
    order_deliver(order_id=order.pk, rider_id=rider.pk)
    # when
    refund = refund_issue(order_id=order.pk, amount=700, bearer="platform")
    settle(emulator)
    # then: booked, then reverted; the claim on the order is released
    refund.refresh_from_db()
    assert refund.status == Refund.Status.FAILED
    re_id = refund.stripe_refund_id
    assert postings(f"refund:{re_id}") == [("platform:losses", "stripe:balance", 700)]
    assert postings(f"refund-failed:{re_id}") == [("stripe:balance", "platform:losses", 700)]
    reverted = ledger_tx(f"refund-failed:{re_id}")
    assert reverted.metadata["stripe_object"] == re_id
    assert reverted.metadata["flow"] == "refund_failed"
    assert reverted.metadata["stripe_balance_transaction"].startswith("txn_")
    assert bal("platform:losses") == 0
    order.refresh_from_db()
    assert order.amount_refunded == 0


def test_dispute_withdrawn_then_won(emulator: Any, parties: dict[str, Any]) -> None:
    # given: a card that is disputed right after the payment
    restaurant, rider = parties["restaurant"], parties["rider"]
    order, intent = order_place(restaurant_id=restaurant.pk, subtotal=2000, delivery_fee=500)
    assert customer_pays(emulator, intent["id"], pm="pm_card_createDispute")
    settle(emulator)
    order_deliver(order_id=order.pk, rider_id=rider.pk)
    # then: the amount and the $15 fee left the Stripe balance: the amount booked to
    # platform:disputes, the fee to platform:stripe_fees like every Stripe fee
    dispute = Dispute.objects.get(order=order)
    assert postings(f"dispute-withdrawn:{dispute.stripe_dispute_id}") == [
        ("platform:disputes", "stripe:balance", 2500),
        ("platform:stripe_fees", "stripe:balance", 1500),
    ]
    assert bal("platform:disputes") == -2500
    assert bal("platform:stripe_fees") == -(card_fee(2500) + 1500)
    assert Anomaly.objects.filter(kind="dispute", order=order).count() == 1
    # when: the dispute is won
    status, _ = emulator.request(
        "POST", f"/v1/test_helpers/disputes/{dispute.stripe_dispute_id}/close", {"outcome": "won"}
    )
    assert status == 200
    settle(emulator)
    # then
    dispute.refresh_from_db()
    assert dispute.status == "won"
    assert postings(f"dispute-reinstated:{dispute.stripe_dispute_id}") == [
        ("stripe:balance", "platform:disputes", 2500)
    ]
    assert bal("platform:disputes") == 0
    assert bal("stripe:balance") == -(2500 - card_fee(2500)) + 1500


def test_topup_moves_bank_money_to_stripe(emulator: Any) -> None:
    # when
    topup = topup_create(amount=50_000, description="cover losses")
    settle(emulator)
    # then
    assert topup.status == "succeeded"
    assert postings(f"topup:{topup.stripe_topup_id}") == [
        ("stripe:balance", "bank:platform", 50_000)
    ]
    tx = ledger_tx(f"topup:{topup.stripe_topup_id}")
    assert tx.metadata["stripe_object"] == topup.stripe_topup_id
    assert tx.metadata["stripe_balance_transaction"].startswith("txn_")
    assert bal("stripe:balance") == -50_000


def test_chaos_duplicates_and_shuffle_give_the_in_order_books(
    emulator: Any, parties: dict[str, Any]
) -> None:
    # given: every webhook delivered up to 3 times, shuffled within windows of 10
    emulator.set_chaos(duplicate_rate=1.0, max_duplicates=2, shuffle=True, seed=5)
    restaurant = parties["restaurant"]
    orders = []
    for i in range(12):
        order, intent = order_place(
            restaurant_id=restaurant.pk, subtotal=1000 + 100 * i, delivery_fee=300
        )
        assert customer_pays(emulator, intent["id"])
        orders.append(order)
    settle(emulator)
    # then: every payment booked exactly once
    totals = [1300 + 100 * i for i in range(12)]
    assert Order.objects.filter(status=Order.Status.PAID).count() == 12
    assert bal("stripe:balance") == -sum(t - card_fee(t) for t in totals)
    assert bal("platform:stripe_fees") == -sum(card_fee(t) for t in totals)
    for order, total in zip(orders, totals, strict=True):
        assert bal(f"orders:{order.pk}") == total
    deliveries = emulator.stats()["webhooks"]
    assert deliveries["duplicates"] > 0
    assert StripeEvent.objects.exclude(status__in=["processed", "ignored"]).count() == 0
