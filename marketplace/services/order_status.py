"""The order status machine: the one transition table, the audited transition every change
goes through, and what a failed or canceled payment does to an unpaid order (its coupon goes
back). Below `orders`, `payments` and `payment_intents`, which all move orders through it."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, cast

from django.db import connection
from django.db.models import Field
from django.utils import timezone

from common import rawsql
from marketplace.flows import flow_post, monetary
from marketplace.models import Campaign, Order, OrderStatusChange
from marketplace.services.common import stripe_meta
from marketplace.services.errors import InvalidState

Status = Order.Status
CouponState = Order.CouponState

# A succeeded charge goes to AWAITING_SETTLEMENT when its balance transaction is not known yet
# (asynchronous capture), or straight to PAID when it is; the payment's booking moves an
# awaiting order to PAID. A paid order, settled or not, never goes back to unpaid states.
_PAID_STATES = frozenset({Status.AWAITING_SETTLEMENT, Status.PAID})
TRANSITIONS: dict[str, frozenset[str]] = {
    Status.CREATED: frozenset({Status.PENDING_PAYMENT, Status.PAYMENT_FAILED, Status.CANCELED})
    | _PAID_STATES,
    Status.PENDING_PAYMENT: frozenset({Status.PAYMENT_FAILED, Status.CANCELED}) | _PAID_STATES,
    Status.PAYMENT_FAILED: frozenset({Status.CANCELED}) | _PAID_STATES,
    Status.CANCELED: _PAID_STATES,
    Status.AWAITING_SETTLEMENT: frozenset({Status.PAID}),
    Status.PAID: frozenset({Status.DELIVERED}),
    Status.DELIVERED: frozenset(),
}


def order_transition(
    *, order: Order, to: str, actor: str = "", note: str = "", fields: Sequence[str] = ()
) -> None:
    """Move a LOCKED order to status `to` and audit it, saving `status` and the other
    `fields` the caller changed in the same statement. Raises InvalidState if the table
    forbids it."""
    if to not in TRANSITIONS[order.status]:
        raise InvalidState(
            f"Order {order.pk} cannot go from {order.status} to {to}.",
            code=f"order_{order.status}",
            extra={"order_id": order.pk, "status": order.status},
        )
    previous, order.status = order.status, to
    if connection.vendor != "postgresql":
        OrderStatusChange.objects.create(
            order=order, from_status=previous, to_status=to, actor=actor[:255], note=note[:500]
        )
        order.save(update_fields=["status", *fields])
        return
    # The audit row and the order's update in one round trip (a data-modifying CTE): this
    # runs on every payment and delivery.
    columns: list[Field[Any, Any]] = [
        cast("Field[Any, Any]", Order._meta.get_field(name)) for name in ("status", *fields)
    ]
    assignments = ", ".join(f"{connection.ops.quote_name(str(c.column))} = %s" for c in columns)
    values = [c.get_db_prep_save(getattr(order, c.attname), connection) for c in columns]
    rawsql.execute(
        "WITH audit AS (INSERT INTO marketplace_order_status_change "
        "(order_id, from_status, to_status, actor, note, at) "
        "VALUES (%s, %s, %s, %s, %s, %s)) "
        f"UPDATE marketplace_order SET {assignments} WHERE id = %s",
        [order.pk, previous, to, actor[:255], note[:500], timezone.now(), *values, order.pk],
    )


def coupon_release(*, order: Order) -> None:
    """Give a LOCKED order's reserved discount back to its campaign (`coupon-release:<id>`).
    A no-op unless the coupon is still reserved."""
    if order.coupon_state != CouponState.RESERVED or order.campaign is None:
        return
    # The campaign's row lock orders this release against a concurrent close: after a close
    # the discount goes back to the marketing budget, not to the emptied campaign account.
    closed = (
        Campaign.objects.select_for_update()
        .filter(pk=order.campaign.pk)
        .values_list("closed_at", flat=True)
        .get()
    )
    name, vars = (
        ("coupon_release_closed", {})
        if closed is not None
        else ("coupon_release", {"campaign": order.campaign.ledger_address})
    )
    flow_post(
        name,
        vars={
            "discount": monetary(order.asset, order.discount),
            "hold": order.coupon_hold_address,
            **vars,
        },
        reference=f"coupon-release:{order.pk}",
        metadata=stripe_meta(order_id=order.pk, campaign=order.campaign.code),
    )
    order.coupon_state = CouponState.RELEASED
    order.save(update_fields=["coupon_state"])


def order_payment_failed(*, order: Order, to: str, note: str = "") -> bool:
    """A LOCKED, unpaid order whose payment failed (`payment_failed`) or was canceled or
    expired (`canceled`): release the coupon. Returns False when there is nothing to do
    (already paid: a late or out-of-order failure event changes nothing)."""
    if order.status in (Status.AWAITING_SETTLEMENT, Status.PAID, Status.DELIVERED):
        return False
    if order.status == to:
        return False
    if to not in TRANSITIONS[order.status]:
        return False
    coupon_release(order=order)
    order_transition(order=order, to=to, actor="stripe", note=note)
    return True
