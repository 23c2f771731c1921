"""Orders: placing one (the row and the coupon reservation in one transaction, then the
PaymentIntent at Stripe after the commit), cancelling or expiring one (the status change
commits first, then its PaymentIntent is cancelled at Stripe: `services.payment_intents`),
assigning a rider, delivering (the split), and the status machine every change goes through.

Status machine (one table, checked under the order's row lock, audited):

    created ──> pending_payment ──> paid ──> delivered
       │              │   ▲          ▲
       │              ▼   │          │ a late payment is honoured
       └────────> payment_failed ──> canceled
"""

from __future__ import annotations

import logging
from datetime import timedelta
from functools import cache
from typing import Any

from django.db import IntegrityError, connection, transaction
from django.db.models import Field, Sum
from django.utils import timezone

from common import rawsql
from common.prepared import prepared_statements
from ledger.errors import InsufficientFunds
from ledger.retry import retry_on_conflict
from marketplace import conf
from marketplace.flows import flow_post, monetary
from marketplace.models import Order, Refund, Restaurant, Rider
from marketplace.models.restaurants import ledger_id
from marketplace.services.campaigns import campaign_for_code, coupon_discount
from marketplace.services.common import MIN_CHARGE_AMOUNT, amount_validate, stripe_meta
from marketplace.services.errors import CouponExhausted, InvalidInput, InvalidState, NotFound
from marketplace.services.locks import order_from_row, order_lock, order_row_sql
from marketplace.services.order_status import (
    TRANSITIONS,
    coupon_release,
    order_payment_failed,
    order_transition,
)
from marketplace.services.parties import customer_get_or_create
from marketplace.services.payment_intents import order_payment_intent_cancel
from stripe_gateway.client import get_gateway
from stripe_gateway.errors import PaymentProviderError

logger = logging.getLogger(__name__)

# The status machine lives in `order_status` (payments need it without placing orders);
# re-exported here, where callers have always found it.
__all__ = ["TRANSITIONS", "coupon_release", "order_payment_failed", "order_transition"]

Status = Order.Status
CouponState = Order.CouponState
IntentCancel = Order.IntentCancel

# --- placing -------------------------------------------------------------------------------


def order_create(
    *,
    restaurant_id: int,
    subtotal: int,
    delivery_fee: int,
    coupon_code: str | None = None,
    customer_email: str = "",
    customer_name: str = "",
) -> Order:
    """The order row and, with a coupon, the reservation of its discount
    (`coupon-reserve:<id>`: coupons:<code> -> orders:<id>:coupon, no overdraft), in one
    transaction: if the campaign cannot pay, nothing is created.

    Raises NotFound, InvalidInput, CouponUnavailable, CouponExhausted."""
    amount_validate(subtotal, field="subtotal")
    amount_validate(delivery_fee, field="delivery_fee", allow_zero=True)
    # Only the restaurant's asset is needed (the order refers to the restaurant by id), read
    # by one raw statement (common.rawsql): the ORM's query building cost several times the
    # round trip.
    row = rawsql.fetch_one(
        "SELECT asset FROM marketplace_restaurant WHERE id = %s", [restaurant_id]
    )
    if row is None:
        raise NotFound(f"Restaurant {restaurant_id} does not exist.", extra={"field": "restaurant"})
    asset: str = row[0]
    campaign = None
    discount = 0
    if coupon_code:
        campaign = campaign_for_code(code=coupon_code, asset=asset)
        discount = coupon_discount(campaign=campaign, subtotal=subtotal)
        if discount == 0:
            campaign = None
    total = subtotal + delivery_fee - discount
    if total < MIN_CHARGE_AMOUNT:
        raise InvalidInput(
            f"The order total ({total}) is below the minimum charge ({MIN_CHARGE_AMOUNT}).",
            code="order_total_too_small",
        )
    order = Order(
        restaurant_id=restaurant_id,
        campaign=campaign,
        asset=asset,
        subtotal=subtotal,
        delivery_fee=delivery_fee,
        discount=discount,
        total=total,
        coupon_state=CouponState.RESERVED if discount else CouponState.NONE,
    )
    if not (discount or customer_email or customer_name):
        # One write, the order's row: one statement is its own transaction (no BEGIN and
        # COMMIT round trips around it).
        _order_insert(order)
        return order
    return _order_create(
        order=order, campaign=campaign, customer_email=customer_email, customer_name=customer_name
    )


@retry_on_conflict
def _order_create(*, order: Order, campaign: Any, customer_email: str, customer_name: str) -> Order:
    """The customer (found or created), the order's row and its coupon reservation, in one
    transaction."""
    with transaction.atomic(durable=True):
        order.customer = customer_get_or_create(email=customer_email, name=customer_name)
        _order_insert(order)
        if order.discount:
            try:
                flow_post(
                    "coupon_reserve",
                    vars={
                        "discount": monetary(order.asset, order.discount),
                        "campaign": campaign.ledger_address,
                        "hold": order.coupon_hold_address,
                    },
                    reference=f"coupon-reserve:{order.pk}",
                    metadata=stripe_meta(order_id=order.pk, campaign=campaign.code),
                )
            except InsufficientFunds as exc:
                raise CouponExhausted(
                    f"Coupon {campaign.code} has no budget left for this order.",
                    extra={"coupon": campaign.code, "available": exc.available},
                ) from None
    return order


@cache
def _order_insert_sql() -> tuple[str, list[Field[Any, Any]]]:
    qn = connection.ops.quote_name
    fields: list[Field[Any, Any]] = [
        f  # type: ignore[misc]
        for f in Order._meta.concrete_fields
        if not f.primary_key
    ]
    columns = ", ".join(qn(str(f.column)) for f in fields)
    placeholders = ", ".join(["%s"] * len(fields))
    sql = f"INSERT INTO marketplace_order ({columns}) VALUES ({placeholders}) RETURNING id"
    return sql, fields


def _order_insert(order: Order) -> None:
    """INSERT the unsaved `order` and set its id: on PostgreSQL one raw statement (what
    `Order.objects.create` writes, without its per-call query compilation; no signal
    receiver listens to orders), elsewhere `save()`."""
    if connection.vendor != "postgresql":
        order.save(force_insert=True)
        return
    sql, fields = _order_insert_sql()
    values = [f.get_db_prep_save(f.pre_save(order, add=True), connection) for f in fields]
    row = rawsql.fetch_one(sql, values)
    assert row is not None  # RETURNING of an INSERT that did not raise
    order.pk = row[0]
    order._state.adding = False
    order._state.db = connection.alias


def order_payment_intent_create(*, order_id: int) -> dict[str, Any]:
    """Create the order's PaymentIntent at Stripe (after the order is committed; idempotency
    key `order:<id>:payment_intent`, so a retry returns the same PaymentIntent) and record
    its id. Returns the PaymentIntent (its `client_secret` goes to the customer's app).

    A refusal that retrying cannot fix cancels the order (and releases its coupon); a
    retryable failure leaves it `created`, to be retried with the same key.
    Raises NotFound, InvalidState, PaymentProviderError."""
    order = Order.objects.filter(pk=order_id).first()
    if order is None:
        raise NotFound(f"Order {order_id} does not exist.")
    return _payment_intent_create(order=order)[1]


def _payment_intent_create(*, order: Order) -> tuple[Order, dict[str, Any]]:
    """order_payment_intent_create for an order already read: (the order as committed, read
    under its lock, with its restaurant and campaign; the PaymentIntent). The status read
    before the Stripe call only spares a call for an order that cannot be paid; what counts
    is the status under the lock after it (a cancel in between is handled there)."""
    if order.status not in (Status.CREATED, Status.PENDING_PAYMENT):
        raise InvalidState(
            f"Order {order.pk} is {order.status}: no new payment.", code=f"order_{order.status}"
        )
    try:
        intent = get_gateway().payment_intent_create(
            amount=order.total,
            asset=order.asset,
            idempotency_key=f"order:{order.pk}:payment_intent",
            metadata={
                "order_id": str(order.pk),
                # The address from the id: no query for the restaurant's row.
                "restaurant": f"{Restaurant.LEDGER_PREFIX}:{ledger_id(order.restaurant_id)}",
            },
            transfer_group=order.transfer_group,
        )
    except PaymentProviderError as exc:
        if not exc.retryable:
            order_cancel(order_id=order.pk, note=f"PaymentIntent refused: {exc.code}")
        raise
    locked = _payment_intent_record(order=order, intent_id=intent["id"])
    if locked is not None:
        return locked, intent
    with transaction.atomic(durable=True):
        locked = order_lock(order_id=order.pk)
        fields: list[str] = []
        if not locked.payment_intent_id:
            locked.payment_intent_id = intent["id"]
            fields.append("payment_intent_id")
            if locked.status == Status.CANCELED:
                # Canceled (expired, by staff) while Stripe was creating it: nobody must pay
                # it, so it is cancelled too, after this commit.
                locked.payment_intent_cancel = IntentCancel.PENDING
                fields.append("payment_intent_cancel")
        if locked.status == Status.CREATED:
            # The PaymentIntent's id is saved in the status change's statement.
            order_transition(
                order=locked, to=Status.PENDING_PAYMENT, note=intent["id"], fields=fields
            )
        elif fields:
            locked.save(update_fields=fields)
    if locked.payment_intent_cancel == IntentCancel.PENDING:
        order_payment_intent_cancel(order_id=order.pk)
        raise InvalidState(
            f"Order {order.pk} was canceled while its PaymentIntent was being created.",
            code="order_canceled",
        )
    return locked, intent


def _transition_sql(change: str, audit: str) -> str:
    """One statement for a status change's common case: `change` (the UPDATE's SET and
    WHERE) on the order, its audit row (`audit`: from_status, to_status, actor, note, at, as
    `order_transition` writes it), and the order as updated, with its restaurant and campaign
    (`order_row_sql`); no row when the WHERE does not hold."""
    select, joins = order_row_sql()
    _, columns = rawsql.columns(Order)
    return (
        f"WITH o AS (UPDATE marketplace_order {change} RETURNING {columns}), "
        "audit AS (INSERT INTO marketplace_order_status_change "
        "(order_id, from_status, to_status, actor, note, at) "
        f"SELECT o.id, {audit} FROM o) "
        f"SELECT {select} FROM o {joins}"
    )


@cache
def _payment_intent_record_sql() -> str:
    return _transition_sql(
        "SET status = %s, payment_intent_id = %s "
        "WHERE id = %s AND status = %s AND payment_intent_id = ''",
        "%s, %s, '', %s, %s",
    )


def _payment_intent_record(*, order: Order, intent_id: str) -> Order | None:
    """The common case of recording a new PaymentIntent, in one statement (on PostgreSQL):
    an order still `created` with no PaymentIntent becomes `pending_payment` with this one,
    audited as `order_transition` audits it (no actor, the PaymentIntent's id as the note).
    The UPDATE takes the order's row lock and checks the status under it, and the audit row
    is written in the same statement: what the locked transaction below does for this case,
    in one round trip instead of four. Returns the order as updated, with its restaurant and
    campaign, or None when the order is in any other state (canceled meanwhile, a retry
    that already has an id...): the caller takes the lock and decides."""
    if connection.vendor != "postgresql":
        return None
    assert Status.PENDING_PAYMENT in TRANSITIONS[Status.CREATED]
    row = rawsql.fetch_one(
        _payment_intent_record_sql(),
        [
            Status.PENDING_PAYMENT,
            intent_id,
            order.pk,
            Status.CREATED,
            Status.CREATED,
            Status.PENDING_PAYMENT,
            intent_id[:500],
            timezone.now(),
        ],
    )
    return None if row is None else order_from_row(row)


@prepared_statements()
def order_place(**kwargs: Any) -> tuple[Order, dict[str, Any]]:
    """order_create, then order_payment_intent_create: (order, PaymentIntent). The order
    returned is the row as the PaymentIntent's transaction committed it (read under its
    lock): not read a third time."""
    return _payment_intent_create(order=order_create(**kwargs))


# --- coupon release, cancel, expiry ----------------------------------------------------------


def order_cancel(*, order_id: int, note: str = "", actor: str = "") -> Order:
    """Cancel an unpaid order: its coupon goes back to the campaign and, when it has a
    PaymentIntent, `payment_intent_cancel` becomes pending, in one transaction. After the
    commit, with no transaction open, the PaymentIntent is cancelled at Stripe
    (`pi-cancel:<id>`); if it had already succeeded, the late payment is booked and the
    order ends up paid; if Stripe's answer is unknown, it stays pending for the next expiry
    pass (`services.payment_intents`). Cancelling a canceled order only retries that.

    Raises NotFound, InvalidState (paid or delivered: refund it instead)."""
    order = _order_cancel(order_id=order_id, note=note, actor=actor)
    if order.payment_intent_cancel == IntentCancel.PENDING:
        order_payment_intent_cancel(order_id=order.pk)
        order.refresh_from_db()
    return order


@retry_on_conflict
def _order_cancel(*, order_id: int, note: str, actor: str) -> Order:
    with transaction.atomic(durable=True):
        order = order_lock(order_id=order_id)
        if order.status in (Status.AWAITING_SETTLEMENT, Status.PAID, Status.DELIVERED):
            raise InvalidState(
                f"Order {order.pk} is {order.status}; refund it instead.",
                code=f"order_{order.status}",
            )
        if order.status != Status.CANCELED:
            coupon_release(order=order)
            fields = []
            if order.payment_intent_id and order.payment_intent_cancel == IntentCancel.NONE:
                order.payment_intent_cancel = IntentCancel.PENDING
                fields.append("payment_intent_cancel")
            order_transition(order=order, to=Status.CANCELED, actor=actor, note=note, fields=fields)
    return order


def orders_expire(*, older_than_seconds: float | None = None) -> int:
    """Cancel unpaid orders older than ORDER_PAYMENT_TTL (default 1 h) with `order_cancel`:
    their coupons go back to the campaigns and their PaymentIntents are cancelled at Stripe.
    A payment that still arrives later is honoured (the payment flow takes the discount from
    the campaign again, or from the marketing budget). Then retries, with the same keys, the
    PaymentIntent cancels an earlier pass or a staff cancel left pending. Returns how many
    orders this pass canceled."""
    ttl = older_than_seconds
    if ttl is None:
        ttl = float(conf.get("ORDER_PAYMENT_TTL"))
    cutoff = timezone.now() - timedelta(seconds=ttl)
    ids = list(
        Order.objects.filter(
            status__in=[Status.CREATED, Status.PENDING_PAYMENT, Status.PAYMENT_FAILED],
            created_at__lt=cutoff,
        ).values_list("id", flat=True)
    )
    done = 0
    for order_id in ids:
        try:
            order_cancel(order_id=order_id, note="expired", actor="expiry")
            done += 1
        except InvalidState:
            continue  # paid meanwhile
    pending = Order.objects.filter(payment_intent_cancel=IntentCancel.PENDING).values_list(
        "id", flat=True
    )
    for order_id in sorted(set(pending) - set(ids)):
        order_payment_intent_cancel(order_id=order_id)
    return done


# --- rider and delivery ---------------------------------------------------------------------


@retry_on_conflict
def order_rider_assign(*, order_id: int, rider_id: int, actor: str = "") -> Order:
    with transaction.atomic(durable=True):
        order = order_lock(order_id=order_id)
        if order.status in (Status.DELIVERED, Status.CANCELED):
            raise InvalidState(f"Order {order.pk} is {order.status}.", code=f"order_{order.status}")
        rider = Rider.objects.filter(pk=rider_id).first()
        if rider is None:
            raise NotFound(f"Rider {rider_id} does not exist.", extra={"field": "rider"})
        if rider.asset != order.asset:
            raise InvalidInput(f"Rider {rider_id} is paid in {rider.asset}, not {order.asset}.")
        order.rider = rider
        order.save(update_fields=["rider"])
    return order


def order_split_amount(*, order: Order) -> int:
    """What the order's account holds for the split: what was paid plus the coupon, minus
    refunds claimed on it before delivery (a pending one included, so that its money is still
    there when Stripe confirms it)."""
    if not order.amount_refunded:
        return order.amount_paid + order.discount
    claimed = (
        Refund.objects.filter(order=order, source=Refund.Source.ORDER)
        .exclude(status=Refund.Status.FAILED)
        .aggregate(total=Sum("amount"))["total"]
        or 0
    )
    return order.amount_paid + order.discount - claimed


@prepared_statements()
@retry_on_conflict
def order_deliver(*, order_id: int, rider_id: int | None = None, actor: str = "") -> Order:
    """Mark a paid order delivered and split its money (`delivery:<id>`): the delivery fee to
    the rider, the restaurant's commission to platform:fees, the rest to the restaurant.
    Delivering a delivered order again is a no-op. Raises NotFound, InvalidState."""
    try:
        return _order_deliver(order_id=order_id, rider_id=rider_id, actor=actor)
    except IntegrityError:
        # The rider's foreign key is checked at commit (no lookup on the hot path).
        if rider_id is not None and not Rider.objects.filter(pk=rider_id).exists():
            raise NotFound(f"Rider {rider_id} does not exist.", extra={"field": "rider"}) from None
        raise


def _order_deliver(*, order_id: int, rider_id: int | None, actor: str) -> Order:
    with transaction.atomic(durable=True):
        order = _order_mark_delivered(order_id=order_id, rider_id=rider_id, actor=actor)
        if order is not None:
            _split_post(order)
            return order
        order = order_lock(order_id=order_id)
        if order.status == Status.DELIVERED:
            return order
        fields = ["delivered_at"]
        if rider_id is not None and order.rider_id != rider_id:
            order.rider_id = rider_id
            fields.append("rider")
        if order.status != Status.PAID:
            raise InvalidState(
                f"Order {order.pk} is {order.status}: only a paid order can be delivered.",
                code="order_not_paid",
                extra={"order_id": order.pk, "status": order.status},
            )
        if order.rider_id is None:
            raise InvalidState(f"Order {order.pk} has no rider.", code="order_without_rider")
        _split_post(order)
        order.delivered_at = timezone.now()
        order_transition(order=order, to=Status.DELIVERED, actor=actor, fields=fields)
    return order


def _split_post(order: Order) -> None:
    """Book the split of a LOCKED order being delivered (`delivery:<id>`)."""
    assert order.rider_id is not None  # checked by the delivery
    amount = order_split_amount(order=order)
    if amount <= 0:
        return
    # The commission comes from the restaurant's row (what the API shows; read with the
    # order's lock), not from ledger metadata; the addresses from the ids.
    commission = order.restaurant.commission
    flow_post(
        "split",
        vars={
            "amount": monetary(order.asset, amount),
            "delivery_fee": monetary(order.asset, order.delivery_fee),
            "order": order.ledger_address,
            "restaurant": f"{Restaurant.LEDGER_PREFIX}:{ledger_id(order.restaurant_id)}",
            "rider": f"{Rider.LEDGER_PREFIX}:{ledger_id(order.rider_id)}",
            "commission": commission,
        },
        reference=f"delivery:{order.pk}",
        metadata=stripe_meta(
            order_id=order.pk,
            payment_intent=order.payment_intent_id,
            charge=order.charge_id,
            campaign=order.campaign.code if order.campaign else None,
        ),
    )


@cache
def _mark_delivered_sql() -> str:
    return _transition_sql(
        "SET status = %s, delivered_at = %s, rider_id = COALESCE(%s, rider_id) "
        "WHERE id = %s AND status = %s AND COALESCE(%s, rider_id) IS NOT NULL",
        "%s, %s, %s, '', %s",
    )


def _order_mark_delivered(*, order_id: int, rider_id: int | None, actor: str) -> Order | None:
    """The common case of a delivery, its lock and status change in one statement (on
    PostgreSQL, inside the delivery's transaction): a paid order with a rider (the one given,
    else its own) becomes delivered, audited as `order_transition` audits it, and is returned
    with its restaurant and campaign, locked by the UPDATE, for the split that follows in the
    same transaction (a failing split rolls the change back). None when the order is in any
    other state (or does not exist): the caller locks it and decides, nothing was written."""
    if connection.vendor != "postgresql":
        return None
    assert Status.DELIVERED in TRANSITIONS[Status.PAID]
    now = timezone.now()
    row = rawsql.fetch_one(
        _mark_delivered_sql(),
        [
            Status.DELIVERED,
            now,
            rider_id,
            order_id,
            Status.PAID,
            rider_id,
            Status.PAID,
            Status.DELIVERED,
            actor[:255],
            now,
        ],
    )
    return None if row is None else order_from_row(row)


def order_get(*, order_id: int) -> Order:
    order = (
        Order.objects.select_related("restaurant", "rider", "campaign").filter(pk=order_id).first()
    )
    if order is None:
        raise NotFound(f"Order {order_id} does not exist.")
    return order
