"""Refunds, full or partial, requested by staff.

1. `refund_request` (one transaction, under the order's row lock): the amount must not exceed
   what was paid and not yet refunded (`amount_refunded <= amount_paid` is also a database
   CHECK); the refund row is created `pending` with who bears it and, fixed now, where the
   money will come from (the order's account before delivery, the bearers after).
2. `refund_submit` (no transaction): Stripe's refund is created with the idempotency key
   `refund:<refund id>` and metadata `refund_id`; its `re_` id is recorded.
3. `refund_sync` (from the refund webhooks, inside the inbox transaction): when Stripe says
   succeeded, the ledger is written (`refund:<re_id>`); when it says failed, the refund is
   written if it had been booked at Stripe, then reverted (`refund-failed:<re_id>`), and the
   claim on the order is released.
4. `refunds_sweep` (Celery beat): a refund left `pending` without its `re_` id (the call's
   answer was lost, or the process died between 1 and 2) is submitted again with the SAME
   key; past the time Stripe remembers keys it is flagged for staff, never sent again.
   A submission holds a lease on its refund (`common.leases`) while it calls Stripe, so the
   sweeper and a second submission leave it alone until the call is over or its lease
   expired.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from fractions import Fraction
from typing import Any

from django.db import IntegrityError, transaction
from django.utils import timezone

from audit.services import audit_record
from common.leases import LeaseColumns, Sweeper, lease_claim
from ledger.models import Transaction
from ledger.retry import retry_on_conflict
from ledger.services import transaction_revert
from marketplace import conf
from marketplace.flows import flow_post, monetary
from marketplace.models import Order, Refund
from marketplace.services.anomalies import anomaly_record
from marketplace.services.common import (
    amount_validate,
    id_parse,
    portion_parse,
    portion_text,
    stripe_meta,
)
from marketplace.services.errors import (
    InvalidInput,
    InvalidState,
    NotFound,
    RefundTooLarge,
    SelfApproval,
)
from marketplace.services.locks import order_lock, refund_lock
from stripe_gateway.client import get_gateway
from stripe_gateway.errors import PaymentProviderError

logger = logging.getLogger(__name__)

Bearer = Refund.Bearer
Status = Refund.Status


def refund_shares(
    *, bearer: str, restaurant_share: str | None = None, rider_share: str | None = None
) -> tuple[Fraction, Fraction, Fraction]:
    """(platform, restaurant, rider) shares, exact and summing to 1. Raises InvalidInput."""
    if bearer == Bearer.PLATFORM:
        return Fraction(1), Fraction(0), Fraction(0)
    if bearer == Bearer.RESTAURANT:
        return Fraction(0), Fraction(1), Fraction(0)
    if bearer == Bearer.RIDER:
        return Fraction(0), Fraction(0), Fraction(1)
    if bearer == Bearer.SHARED:
        restaurant = portion_parse(restaurant_share or "0%", field="restaurant_share")
        rider = portion_parse(rider_share or "0%", field="rider_share")
        if restaurant + rider > 1:
            raise InvalidInput(
                "restaurant_share + rider_share must not exceed 100%.",
                extra={"field": "restaurant_share"},
            )
        return 1 - restaurant - rider, restaurant, rider
    raise InvalidInput(
        f"bearer must be one of {', '.join(Bearer.values)}.", extra={"field": "bearer"}
    )


@retry_on_conflict
def refund_request(
    *,
    order_id: int,
    amount: int,
    bearer: str = Bearer.PLATFORM,
    restaurant_share: str | None = None,
    rider_share: str | None = None,
    reason: str = "",
    requested_by: Any = None,
    request_key: str = "",
) -> Refund:
    """Validate and record a refund (pending). The same `request_key` on the same order
    returns the first refund (a double-submitted form). Raises NotFound, InvalidInput,
    InvalidState (`order_not_paid`), RefundTooLarge."""
    amount_validate(amount, field="amount")
    platform, restaurant, rider = refund_shares(
        bearer=bearer, restaurant_share=restaurant_share, rider_share=rider_share
    )
    if not isinstance(request_key, str) or len(request_key) > 255:
        raise InvalidInput("request_key must be a string of at most 255 characters.")
    with transaction.atomic(durable=True):
        order = order_lock(order_id=order_id)
        if request_key:
            existing = Refund.objects.filter(order=order, request_key=request_key).first()
            if existing is not None:
                if existing.amount != amount or existing.bearer != bearer:
                    raise InvalidInput(
                        "This request_key was used for a different refund.",
                        code="request_key_reused",
                        extra={"refund_id": existing.pk},
                    )
                return existing
        if not request_key:
            duplicate = _recent_duplicate(
                order=order,
                amount=amount,
                bearer=bearer,
                shares=(portion_text(platform), portion_text(restaurant), portion_text(rider)),
                requested_by=requested_by,
            )
            if duplicate is not None:
                return duplicate
        if order.status not in (Order.Status.PAID, Order.Status.DELIVERED):
            raise InvalidState(
                f"Order {order.pk} is {order.status}: nothing was paid to refund.",
                code="order_not_paid",
                extra={"order_id": order.pk, "status": order.status},
            )
        if amount > order.refundable:
            raise RefundTooLarge(
                f"Refund of {amount} exceeds what was paid and not yet refunded "
                f"({order.refundable}).",
                extra={"refundable": order.refundable, "amount": amount},
            )
        delivered = order.status == Order.Status.DELIVERED
        if delivered and rider > 0 and order.rider is None:
            raise InvalidInput("The order has no rider to bear the refund.")
        refund = Refund.objects.create(
            status=(
                Status.AWAITING_APPROVAL
                if refund_needs_approval(asset=order.asset, amount=amount)
                else Status.PENDING
            ),
            order=order,
            amount=amount,
            asset=order.asset,
            bearer=bearer,
            platform_share=portion_text(platform),
            restaurant_share=portion_text(restaurant),
            rider_share=portion_text(rider),
            source=Refund.Source.PARTIES if delivered else Refund.Source.ORDER,
            reason=reason[:500],
            requested_by=requested_by if getattr(requested_by, "pk", None) else None,
            request_key=request_key,
        )
        order.amount_refunded += amount
        order.save(update_fields=["amount_refunded"])
        audit_record(
            actor=requested_by,
            action="refund.request",
            obj=refund,
            amount=amount,
            asset=refund.asset,
            data={
                "status": refund.status,
                "order": order.pk,
                "bearer": bearer,
                "shares": [refund.platform_share, refund.restaurant_share, refund.rider_share],
                "reason": refund.reason,
            },
        )
    return refund


def _recent_duplicate(
    *,
    order: Order,
    amount: int,
    bearer: str,
    shares: tuple[str, str, str],
    requested_by: Any,
) -> Refund | None:
    """A request without an idempotency key is keyed by what it asks: the same order, amount,
    bearer, shares and requester within REFUNDS_DUPLICATE_WINDOW seconds is the same request
    (a double-clicked button, a resubmitted form, a client's retry) and gets the first refund
    back. Called under the order's row lock, so two such requests cannot both miss it. A
    caller who means two equal refunds in a row sends distinct idempotency keys."""
    window = int(conf.get("REFUNDS_DUPLICATE_WINDOW"))
    if window <= 0:
        return None
    user_id = getattr(requested_by, "pk", None)
    return (
        Refund.objects.filter(
            order=order,
            amount=amount,
            bearer=bearer,
            platform_share=shares[0],
            restaurant_share=shares[1],
            rider_share=shares[2],
            requested_by_id=user_id,
            request_key="",
            created_at__gte=timezone.now() - timedelta(seconds=window),
        )
        .order_by("id")
        .first()
    )


def refund_submit(*, refund_id: int) -> Refund:
    """Create the refund at Stripe (no transaction open; idempotency key `refund:<id>`) and
    record its id. A refusal that retrying cannot fix marks the refund failed and releases
    its claim; a retryable failure leaves it pending (submit again: same key).
    Raises NotFound, PaymentProviderError."""
    refund = Refund.objects.select_related("order").filter(pk=refund_id).first()
    if refund is None:
        raise NotFound(f"Refund {refund_id} does not exist.")
    if refund.status != Status.PENDING or refund.stripe_refund_id:
        return refund
    lease = lease_claim(
        Refund.objects.filter(pk=refund.pk, status=Status.PENDING, stripe_refund_id=""),
        seconds=float(conf.get("REFUNDS_SWEEP_GRACE")),
        only=(),
    )
    if not lease.rows:
        return refund  # submitted right now by another worker (or just decided)
    try:
        _submit(refund)
    finally:
        lease.release()
    refund.refresh_from_db()
    return refund


def _submit(refund: Refund) -> None:
    try:
        stripe_refund = get_gateway().refund_create(
            charge_id=refund.order.charge_id,
            amount=refund.amount,
            asset=refund.asset,
            idempotency_key=refund.idempotency_key,
            metadata={"refund_id": str(refund.pk), "order_id": str(refund.order_id)},
            reason="requested_by_customer",
        )
    except PaymentProviderError as exc:
        # An idempotency conflict means an earlier request under this key exists: the refund
        # may have been made, so it is not a refusal (it stays pending; its webhook or a
        # staff lookup by metadata.refund_id resolves it).
        if not exc.retryable and exc.code != "provider_idempotency_error":
            _refund_refused(refund_id=refund.pk, reason=f"{exc.code}: {exc.message}")
        raise
    with transaction.atomic(durable=True):
        locked = refund_lock(refund_id=refund.pk)
        if not locked.stripe_refund_id:
            locked.stripe_refund_id = stripe_refund["id"]
            fields = ["stripe_refund_id"]
            if locked.status == Status.PENDING:
                locked.status = Status.SUBMITTED
                fields.append("status")
            locked.save(update_fields=fields)


def refund_issue(**kwargs: Any) -> Refund:
    """refund_request then, unless it awaits approval, refund_submit: what the API and the
    staff dashboard call."""
    refund = refund_request(**kwargs)
    if refund.status != Status.PENDING:
        return refund
    return refund_submit(refund_id=refund.pk)


def refund_approval_threshold(*, asset: str) -> int:
    """Refunds above this many minor units of `asset` need a second person's approval
    (REFUNDS_APPROVAL_THRESHOLD; an asset not listed: every refund does)."""
    thresholds = conf.get("REFUNDS_APPROVAL_THRESHOLD") or {}
    return int(thresholds.get(asset, 0))


def refund_needs_approval(*, asset: str, amount: int) -> bool:
    return amount > refund_approval_threshold(asset=asset)


@retry_on_conflict
def _decide(*, refund_id: int, actor: Any, approve: bool, note: str) -> Refund:
    """Lock the order then the refund (the service lock order), check the four-eyes rule,
    record the decision and its audit row."""
    valid = type(refund_id) is int and 0 < refund_id < 2**63
    head = (
        Refund.objects.filter(pk=refund_id).values_list("order_id", flat=True).first()
        if valid
        else None
    )
    if head is None:
        raise NotFound(f"Refund {refund_id} does not exist.")
    with transaction.atomic(durable=True):
        order = order_lock(order_id=head)
        refund = refund_lock(refund_id=refund_id)
        if refund.status != Status.AWAITING_APPROVAL:
            raise InvalidState(
                f"Refund {refund.pk} is {refund.status}: only a refund awaiting approval can "
                "be approved or rejected.",
                code="refund_not_awaiting_approval",
                extra={"refund_id": refund.pk, "status": refund.status},
            )
        if getattr(actor, "pk", None) is None:
            raise InvalidInput("An approval needs the deciding user.", code="decider_required")
        if refund.requested_by_id == actor.pk:
            raise SelfApproval(
                "You requested this refund: a different person must approve or reject it.",
                extra={"refund_id": refund.pk},
            )
        refund.status = Status.PENDING if approve else Status.REJECTED
        refund.decided_by = actor
        refund.decided_at = timezone.now()
        refund.decision_note = note[:500]
        refund.save(update_fields=["status", "decided_by", "decided_at", "decision_note"])
        if not approve:
            # Free the claim: what this refund reserved is refundable again.
            order.amount_refunded -= refund.amount
            order.save(update_fields=["amount_refunded"])
        audit_record(
            actor=actor,
            action="refund.approve" if approve else "refund.reject",
            obj=refund,
            amount=refund.amount,
            asset=refund.asset,
            data={"order": order.pk, "requested_by": refund.requested_by_id, "note": note[:500]},
        )
    return refund


def refund_approve(*, refund_id: int, actor: Any, note: str = "") -> Refund:
    """A different user approves a refund awaiting approval: it becomes pending and is sent
    to Stripe after the commit (key `refund:<id>`; the sweeper re-sends it if this process
    dies first). Concurrent approvals: the first wins, the others get InvalidState.
    Raises NotFound, InvalidState (`refund_not_awaiting_approval`), SelfApproval."""
    refund = _decide(refund_id=refund_id, actor=actor, approve=True, note=note)
    return refund_submit(refund_id=refund.pk)


def refund_reject(*, refund_id: int, actor: Any, reason: str) -> Refund:
    """A different user rejects a refund awaiting approval: it is `rejected` and its amount
    is refundable again. Nothing was ever sent to Stripe. Raises as refund_approve, and
    InvalidInput without a reason."""
    if not isinstance(reason, str) or not reason.strip():
        raise InvalidInput("A rejection needs a reason.", extra={"field": "reason"})
    return _decide(refund_id=refund_id, actor=actor, approve=False, note=reason.strip())


@dataclass(frozen=True)
class RefundPreview:
    """What a refund would write to the ledger when Stripe confirms it, computed now."""

    order_id: int
    amount: int
    asset: str
    refundable: int
    source: str  # Refund.Source: the order's account, or the bearers
    needs_approval: bool
    postings: list[dict[str, Any]]


def refund_preview(
    *,
    order_id: int,
    amount: int,
    bearer: str = Bearer.PLATFORM,
    restaurant_share: str | None = None,
    rider_share: str | None = None,
) -> RefundPreview:
    """A dry run of the refund's Numscript flow against current balances (under the same
    locks, nothing written): the exact postings the refund will book. Raises what
    refund_request raises, and the ledger's errors (InsufficientFunds: a bearer cannot pay)."""
    amount_validate(amount, field="amount")
    platform, restaurant, rider = refund_shares(
        bearer=bearer, restaurant_share=restaurant_share, rider_share=rider_share
    )
    order = Order.objects.select_related("restaurant", "rider").filter(pk=order_id).first()
    if order is None:
        raise NotFound(f"Order {order_id} does not exist.")
    if order.status not in (Order.Status.PAID, Order.Status.DELIVERED):
        raise InvalidState(
            f"Order {order.pk} is {order.status}: nothing was paid to refund.",
            code="order_not_paid",
            extra={"order_id": order.pk, "status": order.status},
        )
    if amount > order.refundable:
        raise RefundTooLarge(
            f"Refund of {amount} exceeds what was paid and not yet refunded ({order.refundable}).",
            extra={"refundable": order.refundable, "amount": amount},
        )
    delivered = order.status == Order.Status.DELIVERED
    if delivered and rider > 0 and order.rider is None:
        raise InvalidInput("The order has no rider to bear the refund.")
    draft = Refund(
        order=order,
        amount=amount,
        asset=order.asset,
        platform_share=portion_text(platform),
        restaurant_share=portion_text(restaurant),
        rider_share=portion_text(rider),
        source=Refund.Source.PARTIES if delivered else Refund.Source.ORDER,
    )
    name, vars = _refund_flow(order=order, refund=draft)
    result = flow_post(name, vars=vars, reference=None, dry_run=True)
    return RefundPreview(
        order_id=order.pk,
        amount=amount,
        asset=order.asset,
        refundable=order.refundable,
        source=draft.source,
        needs_approval=refund_needs_approval(asset=order.asset, amount=amount),
        postings=[p.as_dict() for p in result.postings],
    )


def _refunds_due(now: datetime | None, limit: int) -> list[int]:
    """Refunds left `pending` with no `re_` id for longer than REFUNDS_SWEEP_GRACE (their own
    request is over), that Stripe still remembers the key of, and nobody holds a lease on."""
    now = now or timezone.now()
    grace = timedelta(seconds=float(conf.get("REFUNDS_SWEEP_GRACE")))
    max_age = timedelta(seconds=float(conf.get("REFUNDS_SWEEP_MAX_AGE")))
    return list(
        Refund.objects.filter(
            LeaseColumns().free(now),
            status=Status.PENDING,
            stripe_refund_id="",
            created_at__lt=now - grace,
            created_at__gte=now - max_age,
        )
        .order_by("id")
        .values_list("id", flat=True)[:limit]
    )


def _resubmit(refund_ids: Sequence[int]) -> None:
    for refund_id in refund_ids:
        try:
            refund_submit(refund_id=refund_id)
        except PaymentProviderError as exc:
            # Retryable: still pending, the next pass tries again; a refusal marked it failed.
            logger.warning("refund %s: resubmitting: %s", refund_id, exc.code)


SWEEPER = Sweeper(name="refunds", due=_refunds_due, requeue=_resubmit, batch=lambda: 500)


def refunds_sweep(*, now: datetime | None = None) -> int:
    """Re-drive refunds left `pending` with no `re_` id for longer than REFUNDS_SWEEP_GRACE
    (their own request is over): `refund_submit` again, same key `refund:<id>` and the same
    parameters, so Stripe replays the refund if it made it. One pending for longer than
    REFUNDS_SWEEP_MAX_AGE (under Stripe's 24 h key retention) is not sent again (a new
    refund could pay the customer twice): it is recorded as an anomaly for staff. Its
    `refund.created` webhook, if Stripe made it, still resolves it by `metadata.refund_id`.
    Returns how many refunds were submitted again."""
    now = now or timezone.now()
    max_age = timedelta(seconds=float(conf.get("REFUNDS_SWEEP_MAX_AGE")))
    forgotten = Refund.objects.filter(
        status=Status.PENDING, stripe_refund_id="", created_at__lt=now - max_age
    ).order_by("id")
    for refund in forgotten.select_related("order"):
        anomaly_record(
            kind="refund_stuck_pending",
            stripe_object=refund.idempotency_key,
            order=refund.order,
            message=f"Refund {refund.pk} of order {refund.order_id} ({refund.amount} "
            f"{refund.asset}) is pending since {refund.created_at:%Y-%m-%d %H:%M} and "
            "Stripe no longer remembers its idempotency key: look it up at Stripe "
            "(metadata.refund_id) before doing anything.",
        )
    return SWEEPER(now=now)


@retry_on_conflict
def _refund_refused(*, refund_id: int, reason: str) -> None:
    with transaction.atomic(durable=True):
        refund = Refund.objects.filter(pk=refund_id).values_list("order_id", flat=True).first()
        if refund is None:
            return
        order = order_lock(order_id=refund)
        locked = refund_lock(refund_id=refund_id)
        if locked.status == Status.PENDING and not locked.stripe_refund_id:
            _release_claim(order=order, refund=locked, reason=reason)


def _release_claim(*, order: Order, refund: Refund, reason: str) -> None:
    refund.status = Status.FAILED
    refund.failure_reason = reason[:500]
    refund.failed_at = timezone.now()
    refund.save(update_fields=["status", "failure_reason", "failed_at"])
    order.amount_refunded -= refund.amount
    order.save(update_fields=["amount_refunded"])


# --- from Stripe -----------------------------------------------------------------------------


class RefundNotReady(Exception):
    """The refund's payment is not booked yet: the caller defers the event."""


def refund_find(*, stripe_refund: dict[str, Any]) -> Refund | None:
    """Our refund row for a Stripe refund: by `re_` id, else by `metadata.refund_id` (the
    webhook can arrive before `refund_submit` records the id)."""
    refund = Refund.objects.filter(stripe_refund_id=stripe_refund["id"]).first()
    if refund is not None:
        return refund
    refund_id = id_parse((stripe_refund.get("metadata") or {}).get("refund_id"))
    if refund_id is not None:
        return Refund.objects.filter(pk=refund_id, stripe_refund_id="").first()
    return None


def refund_sync(*, stripe_refund: dict[str, Any], event_id: str = "") -> str:
    """Bring the ledger in line with a Stripe refund (fetched, not from the payload), inside
    the caller's transaction. Returns what happened: "booked", "failed", "waiting",
    "unknown_order". Raises RefundNotReady when the payment is not booked yet."""
    re_id = stripe_refund["id"]
    refund = refund_find(stripe_refund=stripe_refund)
    if refund is None:
        refund = _external_refund(stripe_refund=stripe_refund, event_id=event_id)
        if refund is None:
            return "unknown_order"
    order = order_lock(order_id=refund.order_id)
    refund = refund_lock(refund_id=refund.pk)
    if order.status not in (Order.Status.PAID, Order.Status.DELIVERED):
        raise RefundNotReady(f"Order {order.pk}'s payment is not booked yet.")
    if not refund.stripe_refund_id:
        refund.stripe_refund_id = re_id
        refund.save(update_fields=["stripe_refund_id"])
    status = stripe_refund.get("status")
    booked_at_stripe = bool(stripe_refund.get("balance_transaction"))
    tx_id: int | None = None
    if status == "succeeded" or (status in ("failed", "canceled") and booked_at_stripe):
        tx_id = _refund_book(order=order, refund=refund, stripe_refund=stripe_refund)
    if status == "succeeded":
        if refund.status != Status.SUCCEEDED:
            refund.status = Status.SUCCEEDED
            refund.succeeded_at = timezone.now()
            refund.ledger_transaction_id = tx_id
            refund.save(update_fields=["status", "succeeded_at", "ledger_transaction_id"])
        return "booked"
    if status in ("failed", "canceled"):
        if booked_at_stripe and tx_id is not None:
            _refund_revert(order=order, refund=refund, stripe_refund=stripe_refund, tx_id=tx_id)
        if refund.status != Status.FAILED:
            refund.ledger_transaction_id = refund.ledger_transaction_id or (
                tx_id if booked_at_stripe else None
            )
            refund.save(update_fields=["ledger_transaction_id"])
            _release_claim(
                order=order,
                refund=refund,
                reason=str(stripe_refund.get("failure_reason") or status),
            )
        return "failed"
    return "waiting"  # pending / requires_action: a later event will tell


def _refund_meta(order: Order, refund: Refund, stripe_refund: dict[str, Any]) -> dict[str, str]:
    return stripe_meta(
        order_id=order.pk,
        refund_id=refund.pk,
        payment_intent=order.payment_intent_id,
        charge=order.charge_id,
        campaign=order.campaign.code if order.campaign else None,
        bearer=refund.bearer,
    )


def _refund_book(*, order: Order, refund: Refund, stripe_refund: dict[str, Any]) -> int:
    re_id = stripe_refund["id"]
    txn = stripe_refund.get("balance_transaction")
    txn_id = txn.get("id") if isinstance(txn, dict) else txn
    metadata = {
        "stripe_object": re_id,
        "stripe_balance_transaction": str(txn_id) if txn_id else None,
        **_refund_meta(order, refund, stripe_refund),
    }
    metadata = {k: v for k, v in metadata.items() if v}
    name, vars = _refund_flow(order=order, refund=refund)
    result = flow_post(name, vars=vars, reference=f"refund:{re_id}", metadata=metadata)
    return int(result.transaction.pk)


def _refund_flow(*, order: Order, refund: Refund) -> tuple[str, dict[str, str]]:
    """The flow and variables that book `refund` (the booking and its preview share them)."""
    if refund.source == Refund.Source.ORDER:
        return "refund_order", {
            "amount": monetary(refund.asset, refund.amount),
            "order": order.ledger_address,
        }
    rider = order.rider.ledger_address if order.rider else "riders:none"
    return "refund", {
        "amount": monetary(refund.asset, refund.amount),
        "restaurant": order.restaurant.ledger_address,
        "rider": rider,
        "platform_share": refund.platform_share,
        "restaurant_share": refund.restaurant_share,
    }


def _refund_revert(
    *, order: Order, refund: Refund, stripe_refund: dict[str, Any], tx_id: int
) -> None:
    re_id = stripe_refund["id"]
    failure_txn = stripe_refund.get("failure_balance_transaction")
    failure_txn_id = failure_txn.get("id") if isinstance(failure_txn, dict) else failure_txn
    metadata = {
        "stripe_object": re_id,
        "stripe_balance_transaction": str(failure_txn_id) if failure_txn_id else None,
        "flow": "refund_failed",
        **_refund_meta(order, refund, stripe_refund),
    }
    reference = f"refund-failed:{re_id}"
    already = Transaction.objects.filter(reference=reference).exists()
    transaction_revert(
        transaction_id=tx_id,
        reference=reference,
        metadata={k: v for k, v in metadata.items() if v},
        overdraft={"stripe:balance": None},
    )
    if (
        not already
        and refund.source == Refund.Source.ORDER
        and order.status == Order.Status.DELIVERED
    ):
        anomaly_record(
            kind="refund_failed_after_delivery",
            stripe_object=re_id,
            order=order,
            message=f"Refund {re_id} of order {order.pk} failed after the order was delivered: "
            f"{refund.amount} is back in {order.ledger_address}, outside the split. Decide "
            "who it belongs to.",
        )


def _external_refund(*, stripe_refund: dict[str, Any], event_id: str) -> Refund | None:
    """A refund made outside the platform (Stripe dashboard): booked at the platform's loss
    (it did leave our Stripe balance) and flagged. None when the charge is not ours."""
    charge_id = stripe_refund.get("charge") or ""
    order = Order.objects.filter(charge_id=charge_id).first() if charge_id else None
    if order is None:
        pi_id = stripe_refund.get("payment_intent") or ""
        order = Order.objects.filter(payment_intent_id=pi_id).first() if pi_id else None
    if order is None:
        anomaly_record(
            kind="unknown_order",
            stripe_object=stripe_refund["id"],
            stripe_event_id=event_id,
            message=f"Refund {stripe_refund['id']} is for charge {charge_id or '?'}, which is "
            "not one of our orders.",
        )
        return None
    order = order_lock(order_id=order.pk)
    if order.status not in (Order.Status.PAID, Order.Status.DELIVERED):
        raise RefundNotReady(f"Order {order.pk}'s payment is not booked yet.")
    amount = int(stripe_refund["amount"])
    anomaly_record(
        kind="external_refund",
        stripe_object=stripe_refund["id"],
        stripe_event_id=event_id,
        order=order,
        message=f"Refund {stripe_refund['id']} of {amount} on order {order.pk} was not "
        "requested here; booked as a platform loss.",
    )
    try:
        with transaction.atomic():
            refund = Refund.objects.create(
                order=order,
                amount=amount,
                asset=order.asset,
                bearer=Bearer.PLATFORM,
                source=Refund.Source.PARTIES
                if order.status == Order.Status.DELIVERED
                else Refund.Source.ORDER,
                reason="created outside the platform",
                stripe_refund_id=stripe_refund["id"],
                status=Status.SUBMITTED,
            )
    except IntegrityError:
        return Refund.objects.get(stripe_refund_id=stripe_refund["id"])
    order.amount_refunded = min(order.amount_paid, order.amount_refunded + amount)
    order.save(update_fields=["amount_refunded"])
    return refund
