"""Helpers of the dashboard tests: signed-in clients per role, paid orders at the fake Stripe."""

from __future__ import annotations

import re
from typing import Any

from django.test import Client

from marketplace.models import Order
from tests.auth import make_user
from tests.marketplace.factories import RestaurantFactory
from tests.marketplace.fakes import FakeGateway
from tests.marketplace.flows import pay, placed_order


def signed_in(username: str, *, roles: tuple[str, ...] = (), **kwargs: Any) -> tuple[Client, Any]:
    user = make_user(username, roles=roles, **kwargs)
    client = Client()
    client.force_login(user)
    return client, user


def paid_order(
    fake: FakeGateway, *, subtotal: int = 4000, delivery_fee: int = 600, **kw: Any
) -> Order:
    restaurant = kw.pop("restaurant", None) or RestaurantFactory()
    order, intent = placed_order(
        fake, restaurant_id=restaurant.pk, subtotal=subtotal, delivery_fee=delivery_fee, **kw
    )
    pay(fake, order, intent)
    order.refresh_from_db()
    return order


_TOKEN = re.compile(r'name="token" value="([^"]+)"')
_SEEN = re.compile(r'name="seen_refunded" value="(\d+)"')


def form_token(html: str) -> str:
    match = _TOKEN.search(html)
    assert match, "no token in the page"
    return match.group(1)


def seen_refunded(html: str) -> str:
    match = _SEEN.search(html)
    assert match, "no seen_refunded in the page"
    return match.group(1)
