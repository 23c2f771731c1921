"""Concurrent coupon reservations never overspend a campaign's budget (PostgreSQL, real
concurrent transactions). No marketplace lock is involved: the ledger's no-overdraft check on
coupons:<code>, under its balance rows' locks, is what refuses the overspend."""

from __future__ import annotations

import threading
from typing import Any

import pytest
from django.db import connection, connections

from ledger.selectors import balance_get, balances_get
from marketplace.models import Order
from marketplace.services.errors import CouponExhausted
from marketplace.services.orders import order_create
from tests.marketplace.factories import CampaignFactory, RestaurantFactory

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

WORKERS = 16


def test_concurrent_orders_spend_exactly_the_budget() -> None:
    if connection.vendor != "postgresql":
        pytest.skip("needs PostgreSQL's row locks")
    # given: a budget for exactly 5 discounts of 500, and 16 customers at once
    restaurant = RestaurantFactory()
    CampaignFactory(code="RUSH", per_order_cap=500, funding=2500)
    barrier = threading.Barrier(WORKERS)
    outcomes: list[Any] = []
    lock = threading.Lock()

    def customer() -> None:
        try:
            barrier.wait()
            order = order_create(
                restaurant_id=restaurant.pk, subtotal=2000, delivery_fee=300, coupon_code="RUSH"
            )
            result: Any = order.pk
        except Exception as exc:
            result = exc
        finally:
            connections.close_all()
        with lock:
            outcomes.append(result)

    threads = [threading.Thread(target=customer) for _ in range(WORKERS)]
    # when
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    # then
    created = [o for o in outcomes if isinstance(o, int)]
    refused = [o for o in outcomes if isinstance(o, CouponExhausted)]
    assert len(outcomes) == WORKERS
    assert (len(created), len(refused)) == (5, WORKERS - 5), outcomes
    assert balance_get(address="coupons:RUSH", asset="USD/2") == 0
    holds = balances_get(pattern="orders:*:coupon", asset="USD/2")
    assert holds.totals == {"USD/2": 2500}
    assert sorted(holds.accounts) == sorted(f"orders:{pk}:coupon" for pk in created)
    assert Order.objects.count() == 5


def test_the_ledger_alone_refuses_concurrent_overspending() -> None:
    """The same race on the flow alone (no order rows): the ledger's check is the guard."""
    if connection.vendor != "postgresql":
        pytest.skip("needs PostgreSQL's row locks")
    from marketplace.flows import flow_post

    # given
    CampaignFactory(code="BARE", per_order_cap=500, funding=2500)
    barrier = threading.Barrier(WORKERS)
    outcomes: list[Any] = []
    lock = threading.Lock()

    def reserve(n: int) -> None:
        try:
            barrier.wait()
            flow_post(
                "coupon_reserve",
                vars={"discount": "USD/2 500", "campaign": "coupons:BARE", "hold": f"holds:{n}"},
                reference=f"test-reserve:{n}",
            )
            result: Any = n
        except Exception as exc:
            result = exc
        finally:
            connections.close_all()
        with lock:
            outcomes.append(result)

    threads = [threading.Thread(target=reserve, args=(n,)) for n in range(WORKERS)]
    # when
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    # then
    assert len([o for o in outcomes if isinstance(o, int)]) == 5
    assert balance_get(address="coupons:BARE", asset="USD/2") == 0
