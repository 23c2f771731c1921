"""factory_boy factories of the marketplace domain. They create through the services (so a
restaurant has its ledger account metadata, a campaign its funding transaction), never by
writing rows the services would not write."""

from __future__ import annotations

from typing import Any

import factory

from marketplace.models import Campaign, Order, Restaurant, Rider
from marketplace.services.campaigns import campaign_create, campaign_fund
from marketplace.services.orders import order_create
from marketplace.services.parties import restaurant_onboard, rider_onboard


class RestaurantFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Restaurant

    name = factory.Sequence(lambda n: f"Restaurant {n}")
    commission = "15%"

    @classmethod
    def _create(cls, model_class: Any, *args: Any, **kwargs: Any) -> Restaurant:
        kwargs.setdefault("with_stripe_account", False)
        return restaurant_onboard(**kwargs)


class RiderFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Rider

    name = factory.Sequence(lambda n: f"Rider {n}")

    @classmethod
    def _create(cls, model_class: Any, *args: Any, **kwargs: Any) -> Rider:
        kwargs.setdefault("with_stripe_account", False)
        return rider_onboard(**kwargs)


class CampaignFactory(factory.django.DjangoModelFactory):
    """A campaign, funded with `funding` (0 for none) by one `campaign-fund` transaction."""

    class Meta:
        model = Campaign

    code = factory.Sequence(lambda n: f"PROMO{n}")
    budget = 1_500_000
    per_order_cap = 500
    percent_off = "100%"

    @classmethod
    def _create(cls, model_class: Any, *args: Any, funding: int = 0, **kwargs: Any) -> Campaign:
        campaign = campaign_create(**kwargs)
        if funding:
            campaign_fund(campaign_id=campaign.pk, amount=funding)
            campaign.refresh_from_db()
        return campaign


class OrderFactory(factory.django.DjangoModelFactory):
    """An order as `order_create` makes it (coupon reserved, no PaymentIntent yet)."""

    class Meta:
        model = Order

    restaurant = factory.SubFactory(RestaurantFactory)
    subtotal = 2000
    delivery_fee = 500

    @classmethod
    def _create(
        cls,
        model_class: Any,
        *args: Any,
        restaurant: Restaurant,
        coupon: str | None = None,
        **kwargs: Any,
    ) -> Order:
        return order_create(restaurant_id=restaurant.pk, coupon_code=coupon, **kwargs)
