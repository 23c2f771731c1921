"""The database itself refuses what breaks a rule, whatever code path writes."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from django.db import IntegrityError, transaction
from django.db.models import F

from marketplace.models import Campaign, Order, Refund, Restaurant, Rider
from tests.marketplace.factories import CampaignFactory, OrderFactory, RestaurantFactory

pytestmark = pytest.mark.django_db


def refused(write: Callable[[], Any]) -> None:
    with pytest.raises(IntegrityError), transaction.atomic():
        write()


def test_order_rules() -> None:
    order = OrderFactory()
    rows = Order.objects.filter(pk=order.pk)
    refused(lambda: rows.update(total=1))  # total = subtotal + delivery fee - discount
    refused(lambda: rows.update(discount=5000))  # the discount exceeds the subtotal
    # a discount needs a campaign and a reservation
    refused(lambda: rows.update(discount=100, total=F("total") - 100))
    refused(lambda: rows.update(status="paid"))  # paid needs a charge and an amount
    # delivered needs a rider
    refused(lambda: rows.update(status="delivered", charge_id="ch_1", amount_paid=2500))
    refused(lambda: rows.update(payment_intent_id="ch_123"))
    refused(lambda: rows.update(amount_refunded=1))  # more than paid
    refused(lambda: rows.update(asset="usd"))


def test_one_order_per_payment_intent_and_charge() -> None:
    first, second = OrderFactory(), OrderFactory()
    Order.objects.filter(pk=first.pk).update(payment_intent_id="pi_1")
    refused(lambda: Order.objects.filter(pk=second.pk).update(payment_intent_id="pi_1"))


def test_campaign_rules() -> None:
    campaign = CampaignFactory(budget=1000)
    rows = Campaign.objects.filter(pk=campaign.pk)
    refused(lambda: rows.update(funded=1001))
    refused(lambda: rows.update(code="lower case"))
    refused(lambda: rows.update(per_order_cap=0))
    refused(lambda: rows.update(percent_off="lots"))


def test_payee_rules() -> None:
    restaurant = RestaurantFactory()
    refused(lambda: Restaurant.objects.filter(pk=restaurant.pk).update(commission="15"))
    refused(lambda: Restaurant.objects.filter(pk=restaurant.pk).update(stripe_account_id="cus_1"))
    Restaurant.objects.filter(pk=restaurant.pk).update(stripe_account_id="acct_1")
    refused(
        lambda: (
            Rider.objects.create(name="R", stripe_account_id="acct_1", asset="USD/2")
            and Rider.objects.create(name="S", stripe_account_id="acct_1", asset="USD/2")
        )
    )
    refused(lambda: Rider.objects.create(name=""))


def test_refund_rules() -> None:
    order = OrderFactory()
    refused(lambda: Refund.objects.create(order=order, amount=0, source="order"))
    refused(
        lambda: Refund.objects.create(order=order, amount=10, source="order", status="succeeded")
    )
    refused(
        lambda: Refund.objects.create(
            order=order, amount=10, source="order", stripe_refund_id="ch_1"
        )
    )
