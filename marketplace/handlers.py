"""The marketplace's Stripe webhook handlers (imported by `MarketplaceConfig.ready()`).

Each handler has two halves (see `stripe_gateway.registry`): `prepare` runs with no
transaction open and fetches the object from Stripe (the payload is only a hint: the current
object and its balance transaction are what we book from); the handler runs inside the
transaction that marks the event processed and calls one service. An event about an order we
do not know is recorded as an anomaly and the event is `ignored`, never an error; an event
that arrived before the one it depends on (a refund before its payment) is deferred.

| event                                   | service                    | ledger reference         |
|-----------------------------------------|----------------------------|--------------------------|
| payment_intent.succeeded, charge.updated (charge.succeeded: not subscribed) | payments.payment_book | payment:<ch> |
| payment_intent.payment_failed / .canceled | payments.payment_failed_book | coupon-release:<order> |
| refund.created / .updated / .failed, charge.refund.updated, charge.refunded | refunds.refund_sync | refund:<re>, refund-failed:<re> |
| charge.dispute.created / .updated / .funds_withdrawn / .funds_reinstated / .closed | disputes.dispute_sync | dispute-withdrawn:<dp>, dispute-reinstated:<dp> |
| topup.succeeded                         | treasury.topup_book        | topup:<tu>               |
| topup.reversed                          | treasury.topup_reversal_book | topup-reversed:<tu>    |

Payments under asynchronous capture: whichever of `payment_intent.succeeded` and
`charge.updated` is processed first with the charge's balance transaction attached (as
fetched, not as in the payload) books the payment and its fee; one processed before that
marks the order paid-awaiting-settlement and is done (never deferred, never failed for it).
`charge.succeeded` is handled the same way when it comes, but the endpoints do not subscribe
to it (`subscribe=False`): it is sent at the same moment as `payment_intent.succeeded` and
says the same thing (the charge succeeded, no balance transaction yet), so subscribing to
both only made one more delivery per payment to receive, store, claim and find booked (a
third of the payment's webhook traffic; `bench stack`, README). If no event ever sees the
balance transaction, the settlement sweeper (`marketplace.payments_settle`, Celery beat)
fetches the charge and books it. An event about a charge whose order is already paid and
booked by that very charge (usually the second of the two) is processed without fetching
anything: there is nothing left to book, and its row is marked by one lease-guarded UPDATE,
with no transaction around it.

`REQUIRED_EVENTS` (in `stripe_gateway.endpoints`) is computed from this table: what the
`stripe_webhooks setup` command enables on the endpoints.
"""

from __future__ import annotations

import logging
from typing import Any

from common.rawsql import fetch_one
from marketplace import conf
from marketplace.models import Order
from marketplace.services.anomalies import anomaly_record
from marketplace.services.common import id_parse
from marketplace.services.disputes import DisputeNotReady, dispute_sync
from marketplace.services.errors import NotFound
from marketplace.services.locks import order_lock
from marketplace.services.payments import BOOKED, REFUSED, payment_book, payment_failed_book
from marketplace.services.refunds import RefundNotReady, refund_sync
from marketplace.services.treasury import topup_book, topup_reversal_book
from stripe_gateway.client import get_gateway
from stripe_gateway.errors import ProviderObjectNotFound
from stripe_gateway.models import StripeEvent
from stripe_gateway.registry import DeferEvent, HandlerResult, handler_register

logger = logging.getLogger(__name__)


def _defer_seconds() -> float:
    """How long an out-of-order event waits before its retry (short in the demo)."""
    return float(conf.get("MARKETPLACE_DEFER_SECONDS"))


def _order_id(metadata: dict[str, Any] | None) -> int | None:
    return id_parse((metadata or {}).get("order_id"))


def _unknown_order(event: StripeEvent, stripe_object: str, what: str) -> HandlerResult:
    anomaly_record(
        kind="unknown_order",
        stripe_object=stripe_object,
        stripe_event_id=event.stripe_id,
        message=f"{event.type} {stripe_object}: {what}",
        details={"event_type": event.type},
    )
    return HandlerResult.ignored(f"unknown order: {what}")


# --- payments ---------------------------------------------------------------------------------


def _payload_charge_id(obj: dict[str, Any]) -> str | None:
    """The charge an event's object names: itself, or a PaymentIntent's latest charge (an id,
    or the charge expanded); None when it names none."""
    if obj.get("object") == "payment_intent":
        charge_id = obj.get("latest_charge")
        if isinstance(charge_id, dict):
            charge_id = charge_id.get("id")
    else:
        charge_id = obj.get("id")
    return charge_id if isinstance(charge_id, str) and charge_id else None


def _already_booked(obj: dict[str, Any], charge_id: str | None) -> HandlerResult | None:
    """The later events describing one payment (`payment_intent.succeeded`, `charge.updated`,
    `charge.succeeded` where an endpoint still sends it) find it booked by the first: no
    fetch from Stripe, no ledger replay. Safe on the payload's hints alone: PAID (or
    DELIVERED) with this `charge_id` is only ever written together with the `payment:<ch>`
    booking, in one transaction, and an order never leaves those states for an unpaid one. A
    prepared statement (common.rawsql): the ORM's `exists()` compiled the query anew for every event, a
    fifth of an order's worker CPU in `bench orders`' loop. The answer is the event's settled
    outcome (see `stripe_gateway.registry`): the row is marked processed by one lease-guarded
    UPDATE, with no transaction, order lock or handler call."""
    order_id = _order_id(obj.get("metadata"))
    if charge_id is None or order_id is None:
        return None
    booked = fetch_one(
        "SELECT 1 FROM marketplace_order WHERE id = %s AND charge_id = %s AND status IN (%s, %s)",
        [order_id, charge_id, Order.Status.PAID, Order.Status.DELIVERED],
    )
    return HandlerResult.processed(BOOKED) if booked is not None else None


def _fetch_charge(event: StripeEvent) -> dict[str, Any] | HandlerResult | None:
    obj = event.data_object
    charge_id = _payload_charge_id(obj)
    booked = _already_booked(obj, charge_id)
    if booked is not None:
        return booked
    if charge_id is None and obj.get("object") == "payment_intent":
        charge_id = get_gateway().payment_intent_retrieve(obj["id"]).get("latest_charge")
    if not charge_id:
        return None
    try:
        return get_gateway().charge_retrieve(charge_id, expand=("balance_transaction",))
    except ProviderObjectNotFound:
        return None


def _payment_succeeded(event: StripeEvent, charge: dict[str, Any] | None) -> HandlerResult | None:
    """Book the charge `_fetch_charge` fetched (not called when that settled the event: a
    `HandlerResult` from prepare finishes the row without apply, see stripe_gateway.registry)."""
    if charge is None:
        return _unknown_order(event, event.data_object.get("id", ""), "charge not found")
    if charge.get("status") != "succeeded":
        return HandlerResult.ignored(f"charge {charge['id']} is {charge.get('status')}")
    order_id = _order_id(charge.get("metadata"))
    try:
        order = order_lock(order_id=order_id) if order_id else None
    except NotFound:
        order = None
    if order is None:
        return _unknown_order(
            event, charge["id"], f"no order for metadata {charge.get('metadata')}"
        )
    outcome = payment_book(order=order, charge=charge, event_id=event.stripe_id)
    if outcome == REFUSED:
        return HandlerResult.ignored("not booked: see anomalies")
    return HandlerResult.processed(outcome)


handler_register("payment_intent.succeeded", prepare=_fetch_charge)(_payment_succeeded)
# The same news as `payment_intent.succeeded`, at the same moment: handled if it comes (an
# endpoint set up before, a replay), not subscribed to.
handler_register("charge.succeeded", prepare=_fetch_charge, subscribe=False)(_payment_succeeded)
# Asynchronous capture: `charge.updated` is how Stripe says the balance transaction is
# attached (it also fires for description or metadata changes: booking is idempotent).
handler_register("charge.updated", prepare=_fetch_charge)(_payment_succeeded)


def _fetch_intent(event: StripeEvent) -> dict[str, Any] | None:
    try:
        return get_gateway().payment_intent_retrieve(event.data_object["id"])
    except ProviderObjectNotFound:
        return None


def _payment_not_succeeded(
    event: StripeEvent, intent: dict[str, Any] | None
) -> HandlerResult | None:
    intent = intent or event.data_object
    order_id = _order_id(intent.get("metadata"))
    order = Order.objects.filter(pk=order_id).first() if order_id else None
    if order is None:
        return _unknown_order(event, intent.get("id", ""), "no order for this PaymentIntent")
    order = order_lock(order_id=order.pk)
    canceled = event.type == "payment_intent.canceled" or intent.get("status") == "canceled"
    if not payment_failed_book(order=order, intent=intent, canceled=canceled):
        return HandlerResult.processed("nothing to do: paid, or already released")
    return None


handler_register("payment_intent.payment_failed", prepare=_fetch_intent)(_payment_not_succeeded)
handler_register("payment_intent.canceled", prepare=_fetch_intent)(_payment_not_succeeded)


# --- refunds ----------------------------------------------------------------------------------


def _fetch_refunds(event: StripeEvent) -> list[dict[str, Any]]:
    """The refunds the event is about, fresh from Stripe: the refund itself, or for
    `charge.refunded` every refund of the charge. The payload's `refunds` list is not there
    (only when expanded, since 2022-11-15), so they are listed from the API: a refund made
    in the Dashboard is found even if `refund.created` never arrives."""
    obj = event.data_object
    gateway = get_gateway()
    if obj.get("object") == "refund":
        return [gateway.refund_retrieve(obj["id"])]
    charge_id = str(obj.get("id", ""))
    if not charge_id:
        return []
    try:
        return gateway.refunds_for_charge(charge_id)
    except ProviderObjectNotFound:
        return []


def _refund_event(event: StripeEvent, refunds: list[dict[str, Any]]) -> HandlerResult | None:
    if not refunds:
        return HandlerResult.processed("no refund of ours to sync")
    outcomes = []
    for stripe_refund in refunds:
        try:
            outcomes.append(refund_sync(stripe_refund=stripe_refund, event_id=event.stripe_id))
        except RefundNotReady as exc:
            raise DeferEvent(str(exc), retry_in=_defer_seconds()) from None
    if all(outcome == "unknown_order" for outcome in outcomes):
        return HandlerResult.ignored("unknown order: refund on a charge that is not ours")
    return HandlerResult.processed(", ".join(outcomes))


for _type in ("refund.created", "refund.updated", "refund.failed", "charge.refund.updated"):
    handler_register(_type, prepare=_fetch_refunds)(_refund_event)
handler_register("charge.refunded", prepare=_fetch_refunds)(_refund_event)


# --- disputes ---------------------------------------------------------------------------------


def _fetch_dispute(event: StripeEvent) -> dict[str, Any]:
    return get_gateway().dispute_retrieve(event.data_object["id"])


def _dispute_event(event: StripeEvent, stripe_dispute: dict[str, Any]) -> HandlerResult | None:
    try:
        outcome = dispute_sync(stripe_dispute=stripe_dispute, event_id=event.stripe_id)
    except DisputeNotReady as exc:
        raise DeferEvent(str(exc), retry_in=_defer_seconds()) from None
    if outcome == "unknown_order":
        return HandlerResult.ignored("unknown order: dispute on a charge that is not ours")
    return None


for _type in (
    "charge.dispute.created",
    "charge.dispute.updated",
    "charge.dispute.funds_withdrawn",
    "charge.dispute.funds_reinstated",
    "charge.dispute.closed",
):
    handler_register(_type, prepare=_fetch_dispute)(_dispute_event)


# --- top-ups ----------------------------------------------------------------------------------


def _fetch_topup(event: StripeEvent) -> dict[str, Any] | None:
    """The top-up as Stripe has it now (None when Stripe does not know it)."""
    try:
        return get_gateway().topup_retrieve(event.data_object["id"])
    except ProviderObjectNotFound:
        return None


def _topup_unknown(event: StripeEvent, topup_id: str) -> HandlerResult:
    anomaly_record(
        kind="unknown_topup",
        stripe_object=topup_id,
        stripe_event_id=event.stripe_id,
        message=f"{event.type} {topup_id}: Stripe does not know this top-up. Not booked.",
        details={"event_type": event.type},
    )
    return HandlerResult.ignored(f"top-up {topup_id} not found at Stripe")


def _topup_succeeded(
    event: StripeEvent, stripe_topup: dict[str, Any] | None
) -> HandlerResult | None:
    topup_id = str(event.data_object.get("id", ""))
    if stripe_topup is None:
        return _topup_unknown(event, topup_id)
    status = stripe_topup.get("status")
    if status == "pending":
        # The event is newer than what the read returned: ask again later.
        raise DeferEvent(f"top-up {topup_id} is still pending", retry_in=_defer_seconds())
    if status == "reversed":
        # Succeeded, then reversed before this event was processed: book both.
        topup_reversal_book(stripe_topup=stripe_topup)
        return None
    if status != "succeeded":
        return HandlerResult.ignored(f"top-up {topup_id} is {status}: not booked")
    topup_book(stripe_topup=stripe_topup)
    return None


handler_register("topup.succeeded", prepare=_fetch_topup)(_topup_succeeded)


def _topup_reversed(
    event: StripeEvent, stripe_topup: dict[str, Any] | None
) -> HandlerResult | None:
    """Stripe took a top-up's money back: reverse its capital booking (once), booking the
    top-up first if its own event has not been processed yet."""
    topup_id = str(event.data_object.get("id", ""))
    if stripe_topup is None:
        return _topup_unknown(event, topup_id)
    if stripe_topup.get("status") != "reversed":
        raise DeferEvent(
            f"top-up {topup_id} is {stripe_topup.get('status')}, not reversed yet",
            retry_in=_defer_seconds(),
        )
    topup_reversal_book(stripe_topup=stripe_topup)
    return None


handler_register("topup.reversed", prepare=_fetch_topup)(_topup_reversed)
