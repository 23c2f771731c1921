"""Row locks of the marketplace, in one place, taken in one global order:

    campaign -> order -> refund / dispute -> (the ledger's balance rows, taken by the ledger)

Coupon budgets need no marketplace lock: the ledger's no-overdraft check on coupons:<code>,
made under its balance rows' locks, is what keeps two orders from spending the same dollars
(tests/marketplace/test_coupon_concurrency.py proves it on PostgreSQL).

A service that needs several takes them in that order; the ledger's own locks always come
last (a ledger post inside the service's transaction). Locks are held until commit.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import cache
from typing import Any

from django.db import connection

from common import rawsql
from marketplace.models import Campaign, Dispute, Order, Refund, Restaurant, Topup
from marketplace.services.errors import NotFound


def campaign_lock(*, campaign_id: int) -> Campaign:
    campaign = Campaign.objects.select_for_update().filter(pk=campaign_id).first()
    if campaign is None:
        raise NotFound(
            f"Campaign {campaign_id} does not exist.", extra={"campaign_id": campaign_id}
        )
    return campaign


@cache
def _row_columns() -> tuple[tuple[list[Any], str], tuple[list[Any], str], tuple[list[Any], str]]:
    return (
        rawsql.columns(Order, "o"),
        rawsql.columns(Restaurant, "r"),
        rawsql.columns(Campaign, "c"),
    )


def order_row_sql() -> tuple[str, str]:
    """(select list, joins) of a row `order_from_row` reads: every column of the order
    (aliased `o`), of its restaurant (`r`) and of its campaign (`c`, NULLs when none)."""
    (_, order_columns), (_, restaurant_columns), (_, campaign_columns) = _row_columns()
    return (
        f"{order_columns}, {restaurant_columns}, {campaign_columns}",
        "JOIN marketplace_restaurant r ON r.id = o.restaurant_id "
        "LEFT JOIN marketplace_campaign c ON c.id = o.campaign_id",
    )


def order_from_row(values: Sequence[Any]) -> Order:
    """The order of a row of `order_row_sql`'s columns, its restaurant and campaign loaded."""
    (order_fields, _), (restaurant_fields, _), (campaign_fields, _) = _row_columns()
    end = len(order_fields)
    order = rawsql.instance(Order, order_fields, values[:end])
    start, end = end, end + len(restaurant_fields)
    Order.restaurant.field.set_cached_value(
        order, rawsql.instance(Restaurant, restaurant_fields, values[start:end])
    )
    if order.campaign_id is not None:
        Order.campaign.field.set_cached_value(
            order, rawsql.instance(Campaign, campaign_fields, values[end:])
        )
    return order


@cache
def _order_lock_sql(vendor: str) -> str:
    select, joins = order_row_sql()
    lock = " FOR UPDATE OF o" if vendor == "postgresql" else ""
    return f"SELECT {select} FROM marketplace_order o {joins} WHERE o.id = %s{lock}"


def order_lock(*, order_id: int) -> Order:
    """The order, locked, with its restaurant and campaign (when it has one) loaded.

    One statement: this lock is on the hot path of every payment and delivery, and the ORM's
    query building costs several times the round trip. Only the order's row is locked
    (`FOR UPDATE OF`): the restaurant and campaign rows are read as of the statement,
    exactly as the separate reads they replace were, so the global lock order is unchanged."""
    values = rawsql.fetch_one(_order_lock_sql(connection.vendor), [order_id])
    if values is None:
        raise NotFound(f"Order {order_id} does not exist.", extra={"order_id": order_id})
    return order_from_row(values)


def refund_lock(*, refund_id: int) -> Refund:
    refund = Refund.objects.select_for_update().filter(pk=refund_id).first()
    if refund is None:
        raise NotFound(f"Refund {refund_id} does not exist.", extra={"refund_id": refund_id})
    return refund


def dispute_lock(*, stripe_dispute_id: str) -> Dispute | None:
    return Dispute.objects.select_for_update().filter(stripe_dispute_id=stripe_dispute_id).first()


def topup_lock(*, topup_id: int) -> Topup:
    topup = Topup.objects.select_for_update().filter(pk=topup_id).first()
    if topup is None:
        raise NotFound(f"Top-up {topup_id} does not exist.", extra={"topup_id": topup_id})
    return topup
