"""The PaymentIntent of a canceled order, at Stripe.

`orders.order_cancel` (staff, the expiry pass, a refused PaymentIntent) commits the order's
cancel first, with `payment_intent_cancel = pending` when the order has a PaymentIntent. Then,
with no transaction open, `order_payment_intent_cancel` cancels it at Stripe (idempotency key
`pi-cancel:<order id>`, always the same parameters) and records what Stripe says:

| Stripe                                              | payment_intent_cancel | the order        |
|-----------------------------------------------------|-----------------------|------------------|
| canceled (by this call, or found canceled)          | canceled              | stays canceled   |
| 400 `payment_intent_unexpected_state`, the lookup   | succeeded             | paid: the late   |
| says succeeded (the customer paid before the cancel)|                       | payment is booked|
| unknown outcome, unavailable, processing, charge    | stays pending         | the next expiry  |
| without a balance transaction yet                   |                       | pass retries     |
| any other refusal                                   | failed (+ anomaly)    | staff look       |

A late payment is booked here exactly as the `payment_intent.succeeded` webhook books it
(`payments.payment_book`, reference `payment:<ch>`): whichever comes first writes it, the
other is a replay, so the payment is not lost if the webhook is late or never comes.

Must not import: payouts, reconciliation.
"""

from __future__ import annotations

import logging
from typing import Any

from django.db import transaction

from ledger.retry import retry_on_conflict
from marketplace.models import Order
from marketplace.services.anomalies import anomaly_record
from marketplace.services.errors import NotFound
from marketplace.services.locks import order_lock
from marketplace.services.payments import PaymentNotReady, payment_book
from stripe_gateway.client import get_gateway
from stripe_gateway.errors import PaymentProviderError

logger = logging.getLogger(__name__)

Status = Order.Status
IntentCancel = Order.IntentCancel

# A constant, not the caller's reason: a retry with the same key must send the same parameters.
CANCELLATION_REASON = "abandoned"
UNEXPECTED_STATE = "payment_intent_unexpected_state"


def idempotency_key(order_id: int) -> str:
    return f"pi-cancel:{order_id}"


def order_payment_intent_cancel(*, order_id: int) -> str:
    """Cancel at Stripe the PaymentIntent of a canceled order whose `payment_intent_cancel` is
    pending, and record the outcome (see the module doc). Must be called with no transaction
    open. Returns the order's `payment_intent_cancel` afterwards; a no-op unless pending.

    Never raises for a Stripe answer (a retryable one leaves it pending). Raises NotFound."""
    order = Order.objects.filter(pk=order_id).first()
    if order is None:
        raise NotFound(f"Order {order_id} does not exist.")
    if order.payment_intent_cancel != IntentCancel.PENDING:
        return order.payment_intent_cancel
    if order.status in (Status.PAID, Status.DELIVERED):
        # The late payment's webhook booked it in the meantime: nothing left to cancel.
        return _resolve(order_id=order.pk, outcome=IntentCancel.SUCCEEDED)
    gateway = get_gateway()
    try:
        intent = gateway.payment_intent_cancel(
            payment_intent_id=order.payment_intent_id,
            idempotency_key=idempotency_key(order.pk),
            reason=CANCELLATION_REASON,
        )
    except PaymentProviderError as exc:
        if exc.retryable:
            logger.warning(
                "order %s: cancelling %s at Stripe: %s (retried by the next expiry pass)",
                order.pk,
                order.payment_intent_id,
                exc.code,
            )
            return IntentCancel.PENDING
        if exc.stripe_code != UNEXPECTED_STATE:
            return _refused(order_id=order.pk, error=exc)
        # Succeeded, processing, or already canceled: look it up, never guess.
        try:
            intent = gateway.payment_intent_retrieve(order.payment_intent_id)
        except PaymentProviderError as lookup_error:
            logger.warning(
                "order %s: looking up %s failed: %s (retried by the next expiry pass)",
                order.pk,
                order.payment_intent_id,
                lookup_error.code,
            )
            return IntentCancel.PENDING
    return _intent_apply(order=order, intent=intent)


def _intent_apply(*, order: Order, intent: dict[str, Any]) -> str:
    status = intent.get("status")
    if status == "canceled":
        return _resolve(order_id=order.pk, outcome=IntentCancel.CANCELED)
    if status == "succeeded":
        return _late_payment_book(order=order, intent=intent)
    # `processing` (it may still succeed or fail), or cancelable again after a failed attempt:
    # ask again on the next pass.
    logger.info(
        "order %s: PaymentIntent %s is %s; its cancel is retried by the next expiry pass",
        order.pk,
        order.payment_intent_id,
        status,
    )
    return IntentCancel.PENDING


def _late_payment_book(*, order: Order, intent: dict[str, Any]) -> str:
    """The customer paid before the cancel reached Stripe: fetch the charge (no transaction
    open), then book it like the webhook does. The order becomes paid."""
    charge_id = intent.get("latest_charge")
    if isinstance(charge_id, dict):
        charge_id = charge_id.get("id")
    if not charge_id:
        logger.warning("order %s: %s succeeded without a charge yet", order.pk, intent.get("id"))
        return IntentCancel.PENDING
    try:
        charge = get_gateway().charge_retrieve(charge_id, expand=("balance_transaction",))
    except PaymentProviderError as exc:
        logger.warning("order %s: fetching charge %s failed: %s", order.pk, charge_id, exc.code)
        return IntentCancel.PENDING
    return _payment_book(order_id=order.pk, charge=charge)


@retry_on_conflict
def _payment_book(*, order_id: int, charge: dict[str, Any]) -> str:
    with transaction.atomic(durable=True):
        order = order_lock(order_id=order_id)
        if order.payment_intent_cancel != IntentCancel.PENDING:
            return order.payment_intent_cancel
        try:
            booked = payment_book(order=order, charge=charge)
        except PaymentNotReady:
            return IntentCancel.PENDING  # nothing written yet: the next pass books it
        # Not booked: payment_book recorded why (an anomaly, committed with this outcome).
        order.payment_intent_cancel = IntentCancel.SUCCEEDED if booked else IntentCancel.FAILED
        order.save(update_fields=["payment_intent_cancel"])
    logger.info(
        "order %s: canceled, but %s had already succeeded: payment %s",
        order_id,
        order.payment_intent_id,
        "booked" if booked else "not booked (see anomalies)",
    )
    return order.payment_intent_cancel


def _resolve(*, order_id: int, outcome: str) -> str:
    """pending -> `outcome`, in one conditional UPDATE (a concurrent pass may have resolved
    it first: then its outcome stands)."""
    Order.objects.filter(pk=order_id, payment_intent_cancel=IntentCancel.PENDING).update(
        payment_intent_cancel=outcome
    )
    return str(
        Order.objects.filter(pk=order_id).values_list("payment_intent_cancel", flat=True).get()
    )


@retry_on_conflict
def _refused(*, order_id: int, error: PaymentProviderError) -> str:
    with transaction.atomic(durable=True):
        order = order_lock(order_id=order_id)
        if order.payment_intent_cancel != IntentCancel.PENDING:
            return order.payment_intent_cancel
        anomaly_record(
            kind="payment_intent_cancel_refused",
            stripe_object=order.payment_intent_id,
            order=order,
            message=f"Stripe refused to cancel {order.payment_intent_id} of canceled order "
            f"{order.pk}: {error.code}: {error.message}. If it is paid, its webhook books it.",
            details={"stripe_code": error.stripe_code, "provider_status": error.provider_status},
        )
        order.payment_intent_cancel = IntentCancel.FAILED
        order.save(update_fields=["payment_intent_cancel"])
    return IntentCancel.FAILED
