"""Booking captured payments (the `payment` flow) and failed or canceled ones (the coupon
goes back), from Stripe webhooks. These functions run INSIDE the webhook inbox's transaction
(the handler's), with no Stripe call: what Stripe says was fetched beforehand."""

from __future__ import annotations

from typing import Any

from django.utils import timezone

from marketplace.flows import flow_post, monetary
from marketplace.models import Order
from marketplace.services.anomalies import anomaly_record
from marketplace.services.common import stripe_meta
from marketplace.services.errors import MarketplaceError
from marketplace.services.order_status import order_payment_failed, order_transition
from stripe_gateway.client import from_stripe_amount

Status = Order.Status


class PaymentNotReady(MarketplaceError):
    """Stripe has not finished the charge (no balance transaction yet): retry later."""

    code = "payment_not_ready"


def payment_book(*, order: Order, charge: dict[str, Any], event_id: str = "") -> bool:
    """Book a succeeded charge for a LOCKED order (`payment:<ch_id>`): gross from
    stripe:balance into orders:<id> through payments:<ch_id>, the coupon money into the order,
    Stripe's fee to platform:stripe_fees, all in one ledger transaction whose metadata names
    the charge and its balance transaction. Marks the order paid. Idempotent.

    Returns False (with an anomaly recorded) when the charge cannot be this order's payment.
    Raises PaymentNotReady when the charge has no balance transaction yet."""
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
        return False
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
        return False
    amount, asset = from_stripe_amount(charge["amount"], charge["currency"])
    if asset != order.asset:
        anomaly_record(
            kind="currency_mismatch",
            stripe_object=charge_id,
            stripe_event_id=event_id,
            order=order,
            message=f"Charge {charge_id} is in {asset}, order {order.pk} in {order.asset}.",
        )
        return False
    txn = charge.get("balance_transaction")
    if not isinstance(txn, dict):
        raise PaymentNotReady(f"Charge {charge_id} has no balance transaction yet.")
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
        return True
    order.charge_id = charge_id
    order.payment_intent_id = order.payment_intent_id or pi_id
    order.amount_paid = amount
    order.stripe_fee = fee
    order.paid_at = timezone.now()
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
    return True


def payment_failed_book(*, order: Order, intent: dict[str, Any], canceled: bool) -> bool:
    """A LOCKED order whose PaymentIntent failed or was canceled: release the coupon. Nothing
    happens if the PaymentIntent has since succeeded or the order is already paid."""
    if intent.get("status") == "succeeded":
        return False
    if order.payment_intent_id and intent.get("id") != order.payment_intent_id:
        return False
    to = Status.CANCELED if canceled else Status.PAYMENT_FAILED
    return order_payment_failed(order=order, to=to, note=str(intent.get("id", "")))
