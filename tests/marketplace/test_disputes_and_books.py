"""Disputes from their events (any order, unknown charges, the restaurant-bears policy), and
the books: what is owed, the defaulting risk, its warning and its command."""

from __future__ import annotations

import io
import json
import logging

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from ledger.selectors import balance_get, transactions_list
from marketplace.models import Anomaly, Dispute
from marketplace.selectors import owed_get, payee_balances_list, risk_get
from marketplace.services.orders import order_deliver
from marketplace.services.treasury import capital_add
from tests.marketplace.factories import CampaignFactory, RestaurantFactory, RiderFactory
from tests.marketplace.fakes import FakeGateway, dispute, fake_gateway
from tests.marketplace.flows import drain, event, pay, placed_order, process

__all__ = ["fake_gateway"]

pytestmark = pytest.mark.django_db
USD = "USD/2"


def bal(address: str) -> int:
    return balance_get(address=address, asset=USD)


def test_dispute_events_in_any_order_book_withdrawal_and_reinstatement(
    fake_gateway: FakeGateway,
) -> None:
    # given
    restaurant = RestaurantFactory()
    order, intent = placed_order(
        fake_gateway, restaurant_id=restaurant.pk, subtotal=2000, delivery_fee=0
    )
    ch = pay(fake_gateway, order, intent)
    dp = fake_gateway.add(
        dispute(charge_id=ch["id"], payment_intent_id=intent["id"], amount=2000, won=True)
    )
    # when: the reinstatement arrives first
    process(event("charge.dispute.funds_reinstated", dp))
    process(event("charge.dispute.created", dp))
    process(event("charge.dispute.closed", dp))
    # then
    row = Dispute.objects.get()
    assert (row.status, row.amount_withdrawn, row.fee, row.amount_reinstated) == (
        "won",
        2000,
        1500,
        2000,
    )
    assert bal("platform:disputes") == 0
    assert bal("platform:stripe_fees") == -(88 + 1500)
    withdrawn = transactions_list(reference=f"dispute-withdrawn:{dp['id']}").get()
    assert withdrawn.metadata["stripe_object"] == dp["id"]
    assert withdrawn.metadata["stripe_balance_transaction"] == dp["balance_transactions"][0]["id"]
    assert transactions_list(reference=f"dispute-reinstated:{dp['id']}").count() == 1


def test_dispute_before_its_payment_is_deferred(fake_gateway: FakeGateway) -> None:
    # given
    restaurant = RestaurantFactory()
    order, intent = placed_order(
        fake_gateway, restaurant_id=restaurant.pk, subtotal=2000, delivery_fee=0
    )
    dp = fake_gateway.add(
        dispute(charge_id="ch_not_yet", payment_intent_id=intent["id"], amount=500)
    )
    # when
    early = process(event("charge.dispute.created", dp))
    # then
    assert early.status == "deferred"
    assert Dispute.objects.count() == 0
    # when: the payment is booked; the dispute is retried
    ch = pay(fake_gateway, order, intent)
    dp["charge"] = ch["id"]
    drain()
    # then
    assert Dispute.objects.get().amount_withdrawn == 500


def test_dispute_on_a_charge_that_is_not_ours(fake_gateway: FakeGateway) -> None:
    dp = fake_gateway.add(
        dispute(charge_id="ch_foreign", payment_intent_id="pi_foreign", amount=500)
    )
    outcome = process(event("charge.dispute.created", dp))
    assert outcome.status == "ignored"
    assert Anomaly.objects.filter(kind="unknown_order", stripe_object=dp["id"]).count() == 1
    assert transactions_list().count() == 0


def test_dispute_borne_by_the_restaurant_by_policy(
    fake_gateway: FakeGateway, settings: object
) -> None:
    # given
    settings.MARKETPLACE_DISPUTE_BEARER = "restaurant"  # type: ignore[attr-defined]
    restaurant, rider = RestaurantFactory(), RiderFactory()
    order, intent = placed_order(
        fake_gateway, restaurant_id=restaurant.pk, subtotal=2000, delivery_fee=500
    )
    ch = pay(fake_gateway, order, intent)
    order_deliver(order_id=order.pk, rider_id=rider.pk)
    dp = fake_gateway.add(dispute(charge_id=ch["id"], payment_intent_id=intent["id"], amount=2500))
    # when
    process(event("charge.dispute.funds_withdrawn", dp))
    # then: the restaurant owes the platform; the fee is the platform's
    assert bal(restaurant.ledger_address) == 1700 - 2500
    assert bal("platform:disputes") == 0
    assert bal("platform:stripe_fees") == -(103 + 1500)
    (row,) = [p for p in payee_balances_list(kind="restaurant") if p.id == restaurant.pk]
    assert row.available == -800
    owed = {g.name: (g.owed, g.receivable) for g in owed_get().groups}
    assert owed["restaurants"] == (0, 800)


def test_risk_warns_when_the_stripe_balance_cannot_cover_what_is_owed(
    fake_gateway: FakeGateway, caplog: pytest.LogCaptureFixture
) -> None:
    # given: a coupon order: the restaurant is owed more than the customer paid
    restaurant, rider = RestaurantFactory(), RiderFactory()
    CampaignFactory(code="BIG", percent_off="50%", per_order_cap=5000, funding=100_000)
    order, intent = placed_order(
        fake_gateway,
        restaurant_id=restaurant.pk,
        subtotal=4000,
        delivery_fee=500,
        coupon_code="BIG",
    )
    pay(fake_gateway, order, intent)
    order_deliver(order_id=order.pk, rider_id=rider.pk)
    # when
    with caplog.at_level(logging.WARNING, logger="marketplace.selectors"):
        risk = risk_get()
    # then: paid 2500 - fee 103 at Stripe; owed 3400 + 500
    assert risk.stripe_balance == 2500 - 103
    assert risk.owed_total == 3400 + 500
    assert risk.shortfall == 3900 - 2397
    assert not risk.covered
    assert "defaulting risk" in caplog.text
    (campaign,) = risk.campaigns
    assert (campaign.funded, campaign.remaining, campaign.spent, campaign.orders) == (
        100_000,
        98_000,
        2000,
        1,
    )


def test_risk_command(fake_gateway: FakeGateway) -> None:
    # given: nothing owed, capital in the bank
    capital_add(amount=1000, key="t1")
    out = io.StringIO()
    # when
    call_command("risk", "--json", stdout=out)
    # then
    data = json.loads(out.getvalue())
    assert (data["stripe_balance"], data["owed_total"], data["covered"]) == (0, 0, True)
    table = io.StringIO()
    call_command("risk", stdout=table)
    assert "Defaulting risk" in table.getvalue()


def test_risk_command_strict_fails_when_short(fake_gateway: FakeGateway) -> None:
    # given: a restaurant owed money the Stripe balance does not hold
    restaurant, rider = RestaurantFactory(), RiderFactory()
    CampaignFactory(code="SHORT", percent_off="50%", per_order_cap=5000, funding=10_000)
    order, intent = placed_order(
        fake_gateway,
        restaurant_id=restaurant.pk,
        subtotal=4000,
        delivery_fee=0,
        coupon_code="SHORT",
    )
    pay(fake_gateway, order, intent)
    order_deliver(order_id=order.pk, rider_id=rider.pk)
    # then
    with pytest.raises(CommandError, match="not covered"):
        call_command("risk", "--strict", stdout=io.StringIO())
