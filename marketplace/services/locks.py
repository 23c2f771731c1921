"""Row locks of the marketplace, in one place, taken in one global order:

    campaign -> order -> refund / dispute -> (the ledger's balance rows, taken by the ledger)

Coupon budgets need no marketplace lock: the ledger's no-overdraft check on coupons:<code>,
made under its balance rows' locks, is what keeps two orders from spending the same dollars
(tests/marketplace/test_coupon_concurrency.py proves it on PostgreSQL).

A service that needs several takes them in that order; the ledger's own locks always come
last (a ledger post inside the service's transaction). Locks are held until commit.
"""

from __future__ import annotations

from django.db import connection

from marketplace.models import Campaign, Dispute, Order, Refund, Topup
from marketplace.services.errors import NotFound


def campaign_lock(*, campaign_id: int) -> Campaign:
    campaign = Campaign.objects.select_for_update().filter(pk=campaign_id).first()
    if campaign is None:
        raise NotFound(
            f"Campaign {campaign_id} does not exist.", extra={"campaign_id": campaign_id}
        )
    return campaign


def order_lock(*, order_id: int) -> Order:
    """The order, locked (its campaign, when it has one, is loaded on first use).

    One raw statement: this lock is on the hot path of every payment and delivery, and the
    ORM's query building costs several times the round trip."""
    lock = " FOR UPDATE" if connection.features.has_select_for_update else ""
    order = next(
        iter(Order.objects.raw(f"SELECT * FROM marketplace_order WHERE id = %s{lock}", [order_id])),
        None,
    )
    if order is None:
        raise NotFound(f"Order {order_id} does not exist.", extra={"order_id": order_id})
    return order


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
