"""Orders through the real marketplace services and ledger flows (no Stripe call: the charge,
refund and dispute objects are what Stripe would have sent), and small readers."""

from __future__ import annotations

import itertools
from typing import Any

from django.db import transaction

from invoicing.models import Invoice
from invoicing.services import profile_set
from marketplace.models import Order, Refund
from marketplace.services.locks import order_lock
from marketplace.services.orders import order_create, order_deliver
from marketplace.services.payments import payment_book
from marketplace.services.refunds import refund_request, refund_sync
from tests.marketplace.factories import CampaignFactory, RestaurantFactory, RiderFactory

_ids = itertools.count(1)


def restaurant(model: str = "A", food_tax_bps: int | None = 1000, **kwargs: Any) -> Any:
    r = RestaurantFactory(commission=kwargs.pop("commission", "15%"))
    profile_set(restaurant_id=r.pk, model=model, food_tax_bps=food_tax_bps, **kwargs)
    return r


def rider() -> Any:
    return RiderFactory()


def coupon(funding: int = 100_000, percent_off: str = "10%", cap: int = 500) -> str:
    c = CampaignFactory(funding=funding, percent_off=percent_off, per_order_cap=cap)
    return str(c.code)


def paid_order(r: Any, *, subtotal: int = 2000, delivery_fee: int = 500, coupon_code=None) -> Order:
    order = order_create(
        restaurant_id=r.pk,
        subtotal=subtotal,
        delivery_fee=delivery_fee,
        coupon_code=coupon_code,
        customer_email=f"c{next(_ids)}@example.com",
    )
    n = next(_ids)
    charge = {
        "id": f"ch_inv{order.pk}x{n}",
        "amount": order.total,
        "currency": "usd",
        "payment_intent": "",
        "balance_transaction": {"id": f"txn_inv{order.pk}x{n}", "fee": 59},
    }
    with transaction.atomic(durable=True):
        locked = order_lock(order_id=order.pk)
        assert payment_book(order=locked, charge=charge)
    order.refresh_from_db()
    return order


def delivered_order(r: Any, d: Any, **kwargs: Any) -> Order:
    order = paid_order(r, **kwargs)
    order_deliver(order_id=order.pk, rider_id=d.pk)
    order.refresh_from_db()
    return order


def refund(order: Order, amount: int, bearer: str = "platform", **kwargs: Any) -> Refund:
    r = refund_request(order_id=order.pk, amount=amount, bearer=bearer, **kwargs)
    stripe_refund = {
        "id": f"re_inv{r.pk}",
        "amount": amount,
        "currency": "usd",
        "status": "succeeded",
        "balance_transaction": f"txn_re{r.pk}",
        "metadata": {"refund_id": str(r.pk), "order_id": str(order.pk)},
        "charge": order.charge_id,
    }
    with transaction.atomic(durable=True):
        assert refund_sync(stripe_refund=stripe_refund) == "booked"
    r.refresh_from_db()
    return r


def docs(order: Order) -> dict[str, Invoice]:
    return {inv.key: inv for inv in Invoice.objects.filter(order_id=order.pk)}


def lines(inv: Invoice) -> list[tuple[str, int, int, str]]:
    return [(x.kind, x.gross, x.tax, x.account) for x in inv.lines.order_by("position")]
