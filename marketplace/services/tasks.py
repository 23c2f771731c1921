"""Celery tasks of the money flows (thin: each calls one service). Imported by
`MarketplaceConfig.ready()`, which also schedules them on Celery beat."""

from __future__ import annotations

from celery import shared_task

from marketplace.services.orders import orders_expire
from marketplace.services.refunds import refunds_sweep
from marketplace.services.settlement import payments_settle


@shared_task(name="marketplace.orders_expire")
def orders_expire_task() -> int:
    """Cancel unpaid orders older than ORDER_PAYMENT_TTL; their coupons go back."""
    return orders_expire()


@shared_task(name="marketplace.refunds_sweep")
def refunds_sweep_task() -> int:
    """Submit again, with the same key, refunds left pending by a lost answer or a crash."""
    return refunds_sweep()


@shared_task(name="marketplace.payments_settle")
def payments_settle_task() -> int:
    """Book the payments whose balance transaction Stripe attached after their events."""
    return payments_settle().checked
