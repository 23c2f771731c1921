"""What the dashboard reads (selectors read; the pages act through the apps' services).

Every query here is bounded for a large database: today's numbers filter on indexed
`created_at` ranges (the status index with every status listed, so PostgreSQL walks only
today's part of it) and counts are capped; lists are keyset-paginated by id; an order's
timeline reads its own rows by indexed keys (the ledger's metadata GIN index, the inbox's
expression indexes, the payouts' per-payee unique index)."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.db.models import Count, Sum
from django.db.models.functions import Lower
from django.urls import reverse
from django.utils import timezone

from ledger.models import Transaction
from ledger.selectors import transactions_list
from marketplace import conf as marketplace_conf
from marketplace.models import (
    Anomaly,
    Campaign,
    Customer,
    Dispute,
    Order,
    OrderStatusChange,
    Refund,
)
from payouts.models import Payout
from staff.inbox import events_for_objects

OPEN_DISPUTE_STATUSES = ("warning_needs_response", "needs_response", "under_review")
COUNT_CAP = 10_000  # counts stop here ("10000+"): a dashboard never counts a whole table
PAGE = 50


def capped_count(qs: Any, cap: int = COUNT_CAP) -> tuple[int, bool]:
    """(count, capped): `SELECT COUNT(*) FROM (... LIMIT cap+1)`."""
    n = qs[: cap + 1].count()
    return min(n, cap), n > cap


# --- home -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TodayNumbers:
    day_start: datetime
    orders: int
    orders_capped: bool
    paid_orders: int
    payment_volume: dict[str, int]  # asset -> gross captured today
    refunds_awaiting: int
    open_disputes: int
    anomalies: int
    anomalies_capped: bool


def today_numbers(*, now: datetime | None = None) -> TodayNumbers:
    now = now or timezone.now()
    start = now.replace(hour=0, minute=0, second=0, microsecond=0)
    # `status IN (all)` lets PostgreSQL use the (status, created_at) index for the range.
    today = Order.objects.filter(status__in=Order.Status.values, created_at__gte=start)
    orders, orders_capped = capped_count(today)
    # Paid today: an order is paid within ORDER_PAYMENT_TTL of its creation (then expired),
    # so orders created since the day began less that window (and a day's margin for late
    # payments) bound the scan to recent rows of the same index.
    window = timedelta(seconds=int(marketplace_conf.get("ORDER_PAYMENT_TTL"))) + timedelta(days=1)
    paid = (
        Order.objects.filter(
            status__in=[Order.Status.PAID, Order.Status.DELIVERED],
            created_at__gte=start - window,
            paid_at__gte=start,
        )
        .values("asset")
        .annotate(volume=Sum("amount_paid"), n=Count("id"))
    )
    volume = {row["asset"]: int(row["volume"] or 0) for row in paid}
    paid_orders = sum(int(row["n"]) for row in paid)
    anomalies, anomalies_capped = capped_count(Anomaly.objects.filter(resolved=False))
    return TodayNumbers(
        day_start=start,
        orders=orders,
        orders_capped=orders_capped,
        paid_orders=paid_orders,
        payment_volume=volume,
        refunds_awaiting=capped_count(
            Refund.objects.filter(status=Refund.Status.AWAITING_APPROVAL)
        )[0],
        open_disputes=capped_count(Dispute.objects.filter(status__in=OPEN_DISPUTE_STATUSES))[0],
        anomalies=anomalies,
        anomalies_capped=anomalies_capped,
    )


# --- search -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Hit:
    kind: str  # order, customer, refund, campaign, transaction
    label: str
    url: str


@dataclass
class SearchResult:
    query: str
    hits: list[Hit] = field(default_factory=list)
    message: str = ""
    transaction: Transaction | None = None  # a ledger reference without an order/campaign


_ORDER_ID = re.compile(r"^#?(\d{1,18})$")
_STRIPE_ID = re.compile(r"^(pi|ch|re|dp|du|py)_[A-Za-z0-9_]{1,250}$")


def _order_hit(order: Order) -> Hit:
    return Hit(
        "order",
        f"order {order.pk} ({order.status}, {order.total} {order.asset})",
        reverse("staff:order", args=[order.pk]),
    )


def search(*, query: str, user: Any) -> SearchResult:
    """Resolve one search box: an order id (`42`, `#42`), a Stripe id (`pi_`, `ch_`, `re_`,
    `dp_`), a ledger reference (`payment:ch_…`, `delivery:42`), a customer email or name.
    Each lookup is by a unique or indexed key, except names (a bounded scan, 20 hits)."""
    q = (query or "").strip()[:300]
    result = SearchResult(query=q)
    if not q:
        result.message = (
            "Type an order id, a customer email or name, a Stripe id or a ledger reference."
        )
        return result
    match = _ORDER_ID.match(q)
    if match:
        number = int(match.group(1))
        order = Order.objects.filter(pk=number).first() if number < 2**63 else None
        if order is not None:
            result.hits.append(_order_hit(order))
    elif _STRIPE_ID.match(q):
        prefix = q.split("_", 1)[0]
        if prefix == "pi":
            order = Order.objects.filter(payment_intent_id=q).first()
            if order:
                result.hits.append(_order_hit(order))
        elif prefix in ("ch", "py"):
            order = Order.objects.filter(charge_id=q).first()
            if order:
                result.hits.append(_order_hit(order))
        elif prefix == "re":
            refund = Refund.objects.filter(stripe_refund_id=q).first()
            if refund:
                result.hits.append(
                    Hit(
                        "refund",
                        f"refund {refund.pk} of order {refund.order_id} ({refund.status})",
                        reverse("staff:refund", args=[refund.pk]),
                    )
                )
        else:
            dispute = Dispute.objects.filter(stripe_dispute_id=q).select_related("order").first()
            if dispute:
                result.hits.append(_order_hit(dispute.order))
    elif "@" in q and " " not in q:
        by_email = Customer.objects.annotate(e=Lower("email")).filter(e=q.lower())
        for found in by_email[:20]:
            result.hits.append(_customer_hit(found))
    elif ":" in q and " " not in q:
        tx = Transaction.objects.filter(reference=q).first()
        if tx is not None:
            order_id = (tx.metadata or {}).get("order_id")
            campaign = (tx.metadata or {}).get("campaign")
            if order_id and str(order_id).isdigit() and Order.objects.filter(pk=order_id).exists():
                result.hits.append(
                    Hit(
                        "order",
                        f"ledger transaction {tx.pk} of order {order_id}",
                        reverse("staff:order", args=[int(order_id)]),
                    )
                )
            elif campaign and (c := Campaign.objects.filter(code=campaign).first()):
                result.hits.append(
                    Hit(
                        "campaign",
                        f"ledger transaction {tx.pk} of campaign {c.code}",
                        reverse("staff:campaign", args=[c.pk]),
                    )
                )
            else:
                result.transaction = (
                    transactions_list(reference=q).first()  # with its postings
                )
                return result
    else:
        for customer in Customer.objects.filter(name__icontains=q).order_by("id")[:20]:
            result.hits.append(_customer_hit(customer))
    if not result.hits:
        result.message = (
            f"Nothing matches “{q}”. Search takes an order id (42), a customer email or "
            "name, a Stripe id (pi_…, ch_…, re_…, dp_…) or a ledger reference (payment:ch_…)."
        )
    return result


def _customer_hit(customer: Customer) -> Hit:
    return Hit(
        "customer",
        f"customer {customer.pk}: {customer.name or '—'} <{customer.email or 'no email'}>",
        reverse("staff:customer", args=[customer.pk]),
    )


# --- lists ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Page:
    rows: list[Any]
    next_before: int | None  # the keyset cursor of the next (older) page


def keyset(qs: Any, *, before: int | None, limit: int = PAGE) -> Page:
    """Newest first by id, `limit` rows older than `before`; never counts."""
    if before is not None:
        qs = qs.filter(pk__lt=before)
    rows = list(qs.order_by("-pk")[: limit + 1])
    more = len(rows) > limit
    rows = rows[:limit]
    return Page(rows=rows, next_before=rows[-1].pk if more and rows else None)


def orders_page(*, before: int | None, status: str = "") -> Page:
    qs = Order.objects.select_related("customer", "restaurant")
    if status:
        qs = qs.filter(status=status)
    return keyset(qs, before=before)


def refunds_awaiting_page(*, before: int | None) -> Page:
    qs = Refund.objects.filter(status=Refund.Status.AWAITING_APPROVAL).select_related(
        "order", "requested_by"
    )
    return keyset(qs, before=before)


# --- an order and its timeline ----------------------------------------------------------------


@dataclass
class TimelineEntry:
    at: datetime
    kind: str  # status, stripe, ledger, refund, dispute, payout
    title: str
    detail: str = ""
    status: str = ""
    url: str = ""
    postings: list[dict[str, Any]] = field(default_factory=list)


def order_get(*, order_id: int) -> Order | None:
    if not 0 < order_id < 2**63:
        return None
    return (
        Order.objects.select_related("customer", "restaurant", "rider", "campaign")
        .filter(pk=order_id)
        .first()
    )


def order_timeline(*, order: Order) -> list[TimelineEntry]:
    """Everything that happened to an order, in time order: status changes, Stripe events
    from the inbox (with their processing status), ledger transactions with postings,
    refunds (requested, decided, succeeded or failed), disputes, and the payouts that
    included its money (best effort: the first payout of its restaurant and of its rider
    made after delivery)."""
    entries: list[TimelineEntry] = []
    for change in OrderStatusChange.objects.filter(order=order).order_by("id"):
        entries.append(
            TimelineEntry(
                change.at,
                "status",
                f"{change.from_status or 'new'} → {change.to_status}",
                " · ".join(x for x in (change.actor, change.note) if x),
                status=change.to_status,
            )
        )
    refunds = list(Refund.objects.filter(order=order).select_related("requested_by", "decided_by"))
    disputes = list(Dispute.objects.filter(order=order))
    stripe_ids = [r.stripe_refund_id for r in refunds] + [d.stripe_dispute_id for d in disputes]
    if order.payment_intent_id:
        stripe_ids.append(order.payment_intent_id)
    if order.charge_id:
        stripe_ids.append(order.charge_id)
    for event in events_for_objects(
        ids=stripe_ids, payment_intent=order.payment_intent_id, charge=order.charge_id
    ):
        obj = (event.payload.get("data") or {}).get("object") or {}
        entries.append(
            TimelineEntry(
                event.created,
                "stripe",
                f"Stripe {event.type}",
                f"{event.stripe_id} · {obj.get('id', '')}"
                + (f" · attempts {event.attempts}" if event.attempts > 1 else "")
                + (f" · {event.last_error[:200]}" if event.last_error else ""),
                status=event.status,
            )
        )
    for tx in transactions_list(metadata={"order_id": str(order.pk)})[:100]:
        entries.append(
            TimelineEntry(
                tx.timestamp,
                "ledger",
                f"ledger {tx.reference or f'transaction {tx.pk}'}",
                f"transaction {tx.pk} · flow {tx.metadata.get('flow', '—')}",
                postings=[
                    {
                        "source": p.source.address,
                        "destination": p.destination.address,
                        "asset": p.asset,
                        "amount": p.amount,
                    }
                    for p in tx.postings.all()
                ],
            )
        )
    for refund in refunds:
        url = reverse("staff:refund", args=[refund.pk])
        who = refund.requested_by.get_username() if refund.requested_by else "system"
        entries.append(
            TimelineEntry(
                refund.created_at,
                "refund",
                f"refund {refund.pk} requested: {refund.amount} {refund.asset}",
                f"by {who} · borne by {refund.bearer} · {refund.reason}",
                status=refund.status,
                url=url,
            )
        )
        if refund.decided_at:
            decider = refund.decided_by.get_username() if refund.decided_by else "?"
            verb = "rejected" if refund.status == Refund.Status.REJECTED else "approved"
            entries.append(
                TimelineEntry(
                    refund.decided_at,
                    "refund",
                    f"refund {refund.pk} {verb} by {decider}",
                    refund.decision_note,
                    url=url,
                )
            )
        if refund.succeeded_at or refund.failed_at:
            entries.append(
                TimelineEntry(
                    refund.succeeded_at or refund.failed_at,  # type: ignore[arg-type]
                    "refund",
                    f"refund {refund.pk} {'succeeded' if refund.succeeded_at else 'failed'}",
                    refund.stripe_refund_id or refund.failure_reason,
                    status=refund.status,
                    url=url,
                )
            )
    for dispute in disputes:
        entries.append(
            TimelineEntry(
                dispute.created_at,
                "dispute",
                f"dispute {dispute.stripe_dispute_id}: {dispute.amount} {dispute.asset}",
                f"{dispute.reason} · borne by {dispute.bearer}",
                status=dispute.status,
            )
        )
    for payout in order_payouts(order=order):
        entries.append(
            TimelineEntry(
                payout.created_at,
                "payout",
                f"payout {payout.account}: {payout.amount} {payout.asset}",
                f"{payout.transfer_id or 'no transfer yet'} · includes this order's share"
                " (the first payout of the payee after delivery)",
                status=payout.state,
            )
        )
    entries.sort(key=lambda e: e.at)
    return entries


def order_payouts(*, order: Order) -> list[Payout]:
    if order.status != Order.Status.DELIVERED or order.delivered_at is None:
        return []
    payees = [("restaurant", order.restaurant_id)]
    if order.rider_id:
        payees.append(("rider", order.rider_id))
    found = []
    for kind, payee_id in payees:
        payout = (
            Payout.objects.filter(
                payee_kind=kind, payee_id=payee_id, created_at__gte=order.delivered_at
            )
            .order_by("seq")
            .first()
        )
        if payout is not None:
            found.append(payout)
    return found


def customer_orders(*, customer: Customer, before: int | None) -> Page:
    return keyset(
        Order.objects.filter(customer=customer).select_related("restaurant"), before=before
    )


def customer_refunds(*, customer: Customer, limit: int = 100) -> list[Refund]:
    return list(
        Refund.objects.filter(order__customer=customer)
        .select_related("order")
        .order_by("-id")[:limit]
    )
