"""Booking captured payments (the `payment` flow) and failed or canceled ones (the coupon
goes back), from Stripe webhooks. These functions run INSIDE the caller's transaction (the
webhook handler's, or the settlement sweeper's), with no Stripe call: what Stripe says was
fetched beforehand.

Asynchronous capture (the pinned API version's default, `capture_method=automatic_async`):
the charge succeeds before Stripe attaches its balance transaction, so `charge.succeeded` and
`payment_intent.succeeded` usually carry none, and `charge.updated` says when it is attached.
A succeeded charge without one marks the order AWAITING_SETTLEMENT (the customer's money is
real: the order cannot be canceled, the coupon is spent); the payment and its Stripe fee are
booked together, once (`payment:<ch>`), by whichever of those events or the settlement
sweeper (`settlement.payments_settle`) first sees the balance transaction."""

from __future__ import annotations

from typing import Any

from django.utils import timezone

from marketplace.flows import flow_post, monetary
from marketplace.models import Order
from marketplace.services.anomalies import anomaly_record
from marketplace.services.common import stripe_meta
from marketplace.services.order_status import order_payment_failed, order_transition
from stripe_gateway.client import from_stripe_amount

Status = Order.Status


BOOKED = "booked"
AWAITING_SETTLEMENT = "awaiting_settlement"
REFUSED = "refused"


def payment_book(*, order: Order, charge: dict[str, Any], event_id: str = "") -> str:
    """Book a succeeded charge for a LOCKED order (`payment:<ch_id>`): gross from
    stripe:balance into orders:<id> through payments:<ch_id>, the coupon money into the order,
    Stripe's fee to platform:stripe_fees, all in one ledger transaction whose metadata names
    the charge and its balance transaction. Marks the order paid. Idempotent.

    Returns BOOKED (now or before), AWAITING_SETTLEMENT when the charge has no balance
    transaction yet (the order is marked paid-awaiting-settlement; nothing is in the ledger),
    or REFUSED (with an anomaly recorded) when the charge cannot be this order's payment."""
    charge_id = charge["id"]
    if order.charge_id and order.charge_id != charge_id:
        anomaly_record(
            kind="second_payment",
            stripe_object=charge_id,
            stripe_event_id=event_id,
            order=order,
            message=f"Order {order.pk} is already paid by {order.charge_id}; {charge_id} also "
            "succeeded. Not booked: refund it at Stripe.",
        )
        return REFUSED
    if order.charge_id == charge_id and order.status in (Status.PAID, Status.DELIVERED):
        # Booked before: PAID (or DELIVERED) with this charge is only ever written below,
        # in the transaction that posts `payment:<ch>`. Two events of one payment that both
        # passed the handler's unlocked check land here one after the other; the second
        # used to run the script again for a ledger replay (a fifth of `bench stack`'s
        # ledger calls).
        return BOOKED
    pi_id = charge.get("payment_intent") or ""
    if order.payment_intent_id and pi_id and order.payment_intent_id != pi_id:
        anomaly_record(
            kind="payment_intent_mismatch",
            stripe_object=charge_id,
            stripe_event_id=event_id,
            order=order,
            message=f"Charge {charge_id} belongs to {pi_id}, order {order.pk} to "
            f"{order.payment_intent_id}. Not booked.",
        )
        return REFUSED
    amount, asset = from_stripe_amount(charge["amount"], charge["currency"])
    if asset != order.asset:
        anomaly_record(
            kind="currency_mismatch",
            stripe_object=charge_id,
            stripe_event_id=event_id,
            order=order,
            message=f"Charge {charge_id} is in {asset}, order {order.pk} in {order.asset}.",
        )
        return REFUSED
    txn = charge.get("balance_transaction")
    if not isinstance(txn, dict):
        # Asynchronous capture: the money is real, its fee not known yet.
        _awaiting_settlement(order=order, charge_id=charge_id, pi_id=pi_id, amount=amount)
        return AWAITING_SETTLEMENT
    if amount != order.total:
        anomaly_record(
            kind="amount_mismatch",
            stripe_object=charge_id,
            stripe_event_id=event_id,
            order=order,
            message=f"Charge {charge_id} is {amount}, order {order.pk} expects {order.total}; "
            "booked as charged.",
        )
    fee = int(txn.get("fee") or 0)
    meta = stripe_meta(
        stripe_object=charge_id,
        stripe_balance_transaction=txn.get("id"),
        order_id=order.pk,
        payment_intent=pi_id,
        charge=charge_id,
        campaign=order.campaign.code if order.campaign else None,
    )
    variables = {
        "amount": monetary(order.asset, amount),
        "fee": monetary(order.asset, fee),
        "payment": f"payments:{charge_id}",
        "order": order.ledger_address,
    }
    if order.campaign is not None and order.discount:
        variables |= {
            "discount": monetary(order.asset, order.discount),
            "hold": order.coupon_hold_address,
            "campaign": order.campaign.ledger_address,
        }
        flow_post("payment_coupon", vars=variables, reference=f"payment:{charge_id}", metadata=meta)
    else:
        flow_post("payment", vars=variables, reference=f"payment:{charge_id}", metadata=meta)
    if order.status in (Status.PAID, Status.DELIVERED):
        return BOOKED
    order.charge_id = charge_id
    order.payment_intent_id = order.payment_intent_id or pi_id
    order.amount_paid = amount
    order.stripe_fee = fee
    order.paid_at = order.paid_at or timezone.now()
    if order.coupon_state in (Order.CouponState.RESERVED, Order.CouponState.RELEASED):
        order.coupon_state = Order.CouponState.CAPTURED
    order_transition(
        order=order,
        to=Status.PAID,
        actor="stripe",
        note=charge_id,
        fields=(
            "charge_id",
            "payment_intent_id",
            "amount_paid",
            "stripe_fee",
            "paid_at",
            "coupon_state",
        ),
    )
    return BOOKED


def _awaiting_settlement(*, order: Order, charge_id: str, pi_id: str, amount: int) -> None:
    """A LOCKED order whose charge succeeded without a balance transaction: record the payment
    as real (paid, awaiting settlement) so that nothing cancels the order or releases its
    coupon meanwhile. Idempotent; a settled order is left alone."""
    if order.status in (Status.AWAITING_SETTLEMENT, Status.PAID, Status.DELIVERED):
        return
    order.charge_id = charge_id
    order.payment_intent_id = order.payment_intent_id or pi_id
    order.amount_paid = amount
    order.paid_at = timezone.now()
    order_transition(
        order=order,
        to=Status.AWAITING_SETTLEMENT,
        actor="stripe",
        note=f"{charge_id}: balance transaction not attached yet",
        fields=("charge_id", "payment_intent_id", "amount_paid", "paid_at"),
    )


def payment_failed_book(*, order: Order, intent: dict[str, Any], canceled: bool) -> bool:
    """A LOCKED order whose PaymentIntent failed or was canceled: release the coupon. Nothing
    happens if the PaymentIntent has since succeeded or the order is already paid."""
    if intent.get("status") == "succeeded":
        return False
    if order.payment_intent_id and intent.get("id") != order.payment_intent_id:
        return False
    to = Status.CANCELED if canceled else Status.PAYMENT_FAILED
    return order_payment_failed(order=order, to=to, note=str(intent.get("id", "")))
