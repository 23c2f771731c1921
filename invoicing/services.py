"""Invoicing services: profiles, the model policy, issuing (order documents, credit notes,
month-end documents) and the sweep that finds what needs issuing.

Issuing is one durable transaction per batch of orders: the ledger facts are read, every
document of an order is planned before anything is written (an order whose plan fails — a
missing tax rate, a credit larger than its documents — gets an anomaly and nothing at all),
then the orders' `OrderInvoicing` rows and the number series are locked (invoicing/
lock_objects.py), numbers are assigned and the documents and lines inserted. Idempotent:
every document has a unique key, checked under the order's lock.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from invoicing import bulk, conf
from invoicing.domain import (
    Doc,
    InvoicingRuleError,
    IssuedDoc,
    IssuedLine,
    OrderFacts,
    Rates,
    allocate,
    issued_from,
    month_of,
    plan_commission_invoice,
    plan_credit_notes,
    plan_order_documents,
    plan_rider_statement,
)
from invoicing.ledger_facts import order_facts
from invoicing.lock_objects import Decision, order_invoicing_lock
from invoicing.models import (
    Invoice,
    InvoiceLine,
    InvoicingAnomaly,
    InvoicingProfile,
    Model,
    OrderInvoicing,
)
from invoicing.writer import documents_insert
from ledger.retry import retry_on_conflict
from marketplace.models import Dispute, Order, Refund

logger = logging.getLogger(__name__)


class InvoicingError(Exception):
    code = "invoicing_error"

    def __init__(self, message: str, *, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        if code:
            self.code = code


class ModelFrozen(InvoicingError):
    code = "model_frozen"


# --- profiles and the model policy ------------------------------------------------------------


def profile_set(
    *,
    restaurant_id: int,
    model: str,
    food_tax_bps: int | None,
    trust_level: int = 0,
    legal_name: str = "",
    address: str = "",
    tax_id: str = "",
    effective_from: datetime | None = None,
) -> InvoicingProfile:
    """A new version of the restaurant's profile, in force from `effective_from` (now).
    Orders paid before keep the version in force at their payment."""
    if model not in Model.values:
        raise InvoicingError(f"unknown model {model!r}", code="invalid_model")
    if food_tax_bps is not None and not 0 <= food_tax_bps <= 10000:
        raise InvoicingError("food_tax_bps must be within 0..10000", code="invalid_tax_rate")
    return InvoicingProfile.objects.create(
        restaurant_id=restaurant_id,
        model=model,
        food_tax_bps=food_tax_bps,
        trust_level=trust_level,
        legal_name=legal_name,
        address=address,
        tax_id=tax_id,
        effective_from=effective_from or timezone.now(),
    )


def _profiles_at(pairs: Iterable[tuple[int, datetime]]) -> dict[tuple[int, datetime], Any]:
    """The profile in force at each (restaurant, instant)."""
    wanted = list(pairs)
    versions: dict[int, list[InvoicingProfile]] = defaultdict(list)
    for profile in InvoicingProfile.objects.filter(
        restaurant_id__in={r for r, _ in wanted}
    ).order_by("restaurant_id", "effective_from", "id"):
        versions[profile.restaurant_id].append(profile)
    out: dict[tuple[int, datetime], Any] = {}
    for restaurant_id, at in wanted:
        chosen = None
        for profile in versions[restaurant_id]:
            if profile.effective_from <= at:
                chosen = profile
        out[(restaurant_id, at)] = chosen
    return out


def model_decide(profile: InvoicingProfile | None) -> tuple[str, str]:
    """The policy, applied at payment: a restaurant trusted at least
    INVOICING_MERCHANT_MODE_TRUST sells through the platform (model C); otherwise its default
    model; a restaurant without a profile defaults to A."""
    if profile is None:
        return Model.A, "no profile: default A"
    threshold = conf.get("INVOICING_MERCHANT_MODE_TRUST")
    if threshold is not None and profile.trust_level >= threshold and profile.model != Model.C:
        return Model.C, f"trust level {profile.trust_level} >= {threshold}: merchant mode"
    return profile.model, f"restaurant default {profile.model}"


def orders_decide(order_ids: Iterable[int]) -> int:
    """Record the model of paid orders that have none yet, as the policy decides with the
    profile in force when each was paid. Returns how many were decided (a concurrent caller
    deciding the same order first wins; the policy gives both the same answer)."""
    ids = sorted(set(order_ids))
    # Two index lookups rather than NOT EXISTS: for a batch the planner prefers hashing the
    # whole decisions table.
    decided = {
        row[0]
        for row in bulk.select_any(
            "SELECT order_id FROM invoicing_orderinvoicing WHERE order_id = ANY(%s)", ids
        )
    }
    rows = [
        (oid, rid, bulk.as_datetime(at))
        for oid, rid, at in bulk.select_any(
            "SELECT id, restaurant_id, paid_at FROM marketplace_order "
            "WHERE id = ANY(%s) AND paid_at IS NOT NULL",
            [oid for oid in ids if oid not in decided],
        )
    ]
    if not rows:
        return 0
    profiles = _profiles_at((r, at) for _, r, at in rows)
    new = []
    for oid, restaurant_id, paid_at in rows:
        profile = profiles[(restaurant_id, paid_at)]
        model, reason = model_decide(profile)
        new.append((oid, str(model), reason, profile.pk if profile else None))
    now = timezone.now()
    if bulk.fast():
        bulk.execute(
            "INSERT INTO invoicing_orderinvoicing "
            "(order_id, model, reason, profile_id, decided_at, documented) "
            "SELECT o, m, r, p, %s, false "
            "FROM unnest(%s::bigint[], %s::text[], %s::text[], %s::bigint[]) AS v(o, m, r, p) "
            "ON CONFLICT (order_id) DO NOTHING",
            [now, *(list(column) for column in zip(*new, strict=True))],
        )
    else:
        OrderInvoicing.objects.bulk_create(
            [
                OrderInvoicing(order_id=o, model=m, reason=r, profile_id=p, decided_at=now)
                for o, m, r, p in new
            ],
            ignore_conflicts=True,
        )
    return len(new)


def order_model_override(*, order_id: int, model: str, reason: str = "staff") -> OrderInvoicing:
    """Set an order's model by hand before its first document. Raises ModelFrozen after."""
    if model not in Model.values:
        raise InvoicingError(f"unknown model {model!r}", code="invalid_model")
    with transaction.atomic(durable=True):
        orders_decide([order_id])
        locked = order_invoicing_lock([order_id]).get(order_id)
        if locked is None:
            raise InvoicingError(f"order {order_id} is not paid", code="order_not_paid")
        if Invoice.objects.filter(order_id=order_id).exists():
            raise ModelFrozen(f"order {order_id} already has documents: model {locked.model}")
        OrderInvoicing.objects.filter(order_id=order_id).update(model=model, reason=reason[:200])
    return OrderInvoicing.objects.get(order_id=order_id)


# --- issuing ----------------------------------------------------------------------------------


@dataclass
class IssueResult:
    issued: dict[str, int] = field(default_factory=dict)  # "A invoice" -> n
    anomalies: list[str] = field(default_factory=list)

    def add(self, doc: Doc) -> None:
        label = f"{doc.model or '-'} {doc.kind}"
        self.issued[label] = self.issued.get(label, 0) + 1

    @property
    def count(self) -> int:
        return sum(self.issued.values())


def anomaly_record(*, kind: str, key: str, message: str, order_id: int | None = None) -> None:
    logger.warning("invoicing anomaly %s %s: %s", kind, key, message)
    InvoicingAnomaly.objects.bulk_create(
        [InvoicingAnomaly(kind=kind, key=key[:120], message=message, order_id=order_id)],
        ignore_conflicts=True,
    )


def _rates(food_bps: int | None, services: int | None, rider: int) -> Rates:
    if food_bps is None:
        raise InvoicingRuleError(
            "the restaurant has no food tax rate (set its invoicing profile)",
            code="tax_rate_missing",
        )
    if services is None:
        raise InvoicingRuleError(
            "INVOICING_SERVICES_TAX_BPS is not configured", code="tax_rate_missing"
        )
    return Rates(food_bps, int(services), rider)


@dataclass
class _Existing:
    """An order's issued documents, as planning needs them."""

    keys: set[str] = field(default_factory=set)
    credit_events: set[str] = field(default_factory=set)
    docs: dict[str, IssuedDoc] = field(default_factory=dict)  # role -> with lines, if needed


def _existing(order_ids: list[int], need_lines: set[int]) -> dict[int, _Existing]:
    """The orders' issued documents; for the orders in `need_lines` (a credit event to plan)
    also the lines of their invoices with what earlier credit notes took from each."""
    out: dict[int, _Existing] = defaultdict(_Existing)
    by_id: dict[int, tuple[int, str]] = {}
    for pk, order_id, key, credit_event in bulk.select_any(
        "SELECT id, order_id, key, credit_event FROM invoicing_invoice WHERE order_id = ANY(%s)",
        order_ids,
    ):
        found = out[order_id]
        found.keys.add(key)
        if credit_event:
            found.credit_events.add(credit_event)
        by_id[pk] = (order_id, key)
    if not need_lines:
        return out
    rows = list(
        InvoiceLine.objects.filter(invoice__order_id__in=sorted(need_lines))
        .order_by("invoice_id", "position")
        .values_list(
            "invoice_id",
            "invoice__original_id",
            "position",
            "kind",
            "gross",
            "tax_bps",
            "original_position",
        )
    )
    docs: dict[int, IssuedDoc] = {}
    for invoice_id, original_id, position, kind, gross, bps, _ in rows:
        if original_id is None:
            order_id, key = by_id[invoice_id]
            doc = docs.setdefault(invoice_id, IssuedDoc(key, []))
            doc.lines.append(IssuedLine(position, kind, gross, bps))
    legacy: dict[int, int] = defaultdict(int)
    for _, original_id, _, _, gross, _, original_position in rows:
        if original_id is None or original_id not in docs:
            continue
        if original_position is None:  # a credit line from before per-line allocation
            legacy[original_id] += -gross
            continue
        for line in docs[original_id].lines:
            if line.position == original_position:
                line.credited += -gross
    for original_id, amount in legacy.items():
        doc = docs[original_id]
        amount = max(0, min(amount, doc.remaining))
        shares = allocate(amount, [line.remaining for line in doc.lines])
        for line, share in zip(doc.lines, shares, strict=True):
            line.credited += share
    for invoice_id, doc in docs.items():
        order_id, key = by_id[invoice_id]
        out[order_id].docs[key.rsplit(":", 1)[1]] = doc
    return out


def _plan_order(
    facts: OrderFacts, decision: Decision, rates: Rates | InvoicingRuleError, existing: _Existing
) -> list[Doc]:
    """Everything still to issue for one order (raises InvoicingRuleError)."""
    if isinstance(rates, InvoicingRuleError):
        raise rates
    planned: list[Doc] = []
    if facts.delivered and not decision.documented:
        planned = [
            d
            for d in plan_order_documents(facts, decision.model, rates)
            if d.key not in existing.keys
        ]
    pending = [event for event in facts.credits if event.key not in existing.credit_events]
    if not pending:
        return planned
    role_docs = dict(existing.docs)
    for doc in planned:
        role_docs[doc.key.rsplit(":", 1)[1]] = issued_from(doc)
    for event in pending:  # each sees the room the previous ones used (recorded in role_docs)
        planned += plan_credit_notes(facts, decision.model, event, role_docs)
    return planned


def invoices_issue(order_ids: Iterable[int], *, now: datetime | None = None) -> IssueResult:
    """Issue what the orders' ledger transactions call for: the delivery's documents and the
    credit notes of refunds and lost disputes. Idempotent. Orders that cannot be documented
    get an anomaly and nothing; the others are issued."""
    ids = sorted(set(order_ids))
    result = IssueResult()
    batch = int(conf.get("INVOICING_SWEEP_BATCH"))
    for start in range(0, len(ids), batch):
        _issue_batch(ids[start : start + batch], now=now, result=result)
    return result


@retry_on_conflict
def _issue_batch(ids: list[int], *, now: datetime | None, result: IssueResult) -> None:
    """One transaction: lock the orders' decisions, plan, number and insert."""
    facts_by_order = order_facts(ids)
    if not facts_by_order:
        return
    orders_decide(facts_by_order)
    now = now or timezone.now()
    local = IssueResult()
    with transaction.atomic(durable=True):
        decisions = order_invoicing_lock(facts_by_order)
        food_bps = dict(
            InvoicingProfile.objects.filter(
                pk__in={d.profile_id for d in decisions.values() if d.profile_id}
            ).values_list("id", "food_tax_bps")
        )
        need_lines = {oid for oid in decisions if facts_by_order[oid].credits}
        existing = _existing(list(decisions), need_lines)
        to_issue: list[Doc] = []
        documented: list[int] = []
        services = conf.get("INVOICING_SERVICES_TAX_BPS")
        rider = int(conf.get("INVOICING_RIDER_TAX_BPS"))
        rates_of: dict[int | None, Rates | InvoicingRuleError] = {}
        for oid, decision in decisions.items():
            facts = facts_by_order[oid]
            if decision.profile_id not in rates_of:
                try:
                    bps = food_bps.get(decision.profile_id) if decision.profile_id else None
                    rates_of[decision.profile_id] = _rates(bps, services, rider)
                except InvoicingRuleError as exc:
                    rates_of[decision.profile_id] = exc
            try:
                docs = _plan_order(facts, decision, rates_of[decision.profile_id], existing[oid])
            except InvoicingRuleError as exc:
                message = f"order {oid}: {exc}"
                anomaly_record(kind=exc.code, key=f"order:{oid}", message=message, order_id=oid)
                local.anomalies.append(message)
                continue
            to_issue += docs
            if facts.delivered and not decision.documented:
                documented.append(oid)
        asset_of: dict[int | None, str] = {f.order_id: f.asset for f in facts_by_order.values()}
        documents_insert(to_issue, asset_of=asset_of, now=now)
        bulk.execute_any(
            "UPDATE invoicing_orderinvoicing SET documented = true WHERE order_id = ANY(%s)",
            documented,
        )
        for doc in to_issue:
            local.add(doc)
    for label, n in local.issued.items():
        result.issued[label] = result.issued.get(label, 0) + n
    result.anomalies += local.anomalies


def _month_bounds(period: str) -> tuple[datetime, datetime]:
    year, month = (int(x) for x in period.split("-"))
    start = datetime(year, month, 1, tzinfo=UTC)
    end = datetime(year + (month == 12), month % 12 + 1, 1, tzinfo=UTC)
    return start, end


def period_orders(period: str) -> list[int]:
    """Orders delivered in the month, or refunded / disputed in it (rider shares)."""
    start, end = _month_bounds(period)
    delivered = Order.objects.filter(delivered_at__gte=start, delivered_at__lt=end).values_list(
        "id", flat=True
    )
    refunded = Refund.objects.filter(succeeded_at__gte=start, succeeded_at__lt=end).values_list(
        "order_id", flat=True
    )
    disputed = Dispute.objects.filter(
        status="lost", updated_at__gte=start, updated_at__lt=end
    ).values_list("order_id", flat=True)
    return sorted(set(delivered) | set(refunded) | set(disputed))


@retry_on_conflict
def invoices_issue_period(*, period: str, now: datetime | None = None) -> IssueResult:
    """Month-end documents of `period` (YYYY-MM): the model B commission invoice of each
    restaurant and each rider's statement. Idempotent (one key per party and month)."""
    _month_bounds(period)
    now = now or timezone.now()
    facts = order_facts(period_orders(period), payment=False)
    models_by_order = dict(
        bulk.select_any(
            "SELECT order_id, model FROM invoicing_orderinvoicing WHERE order_id = ANY(%s)",
            sorted(facts),
        )
    )
    by_restaurant: dict[str, list[OrderFacts]] = defaultdict(list)
    by_rider: dict[str, list[OrderFacts]] = defaultdict(list)
    for f in facts.values():
        if models_by_order.get(f.order_id) == "B" and (
            (f.split_at and month_of(f.split_at) == period)
            or any(month_of(c.at) == period for c in f.credits)
        ):
            by_restaurant[f.restaurant].append(f)
        riders = {f.rider} if f.rider else set()
        riders |= {a for c in f.credits for a in c.shares if a.startswith("riders:")}
        for rider in riders:
            by_rider[rider].append(f)
    services = conf.get("INVOICING_SERVICES_TAX_BPS")
    result = IssueResult()
    docs: list[Doc] = []
    if by_restaurant and services is None:
        anomaly_record(
            kind="tax_rate_missing",
            key=f"commission:{period}",
            message="INVOICING_SERVICES_TAX_BPS is not configured: no commission invoices",
        )
        by_restaurant = defaultdict(list)
    for restaurant, orders in sorted(by_restaurant.items()):
        doc = plan_commission_invoice(restaurant, period, orders, int(services))
        if doc:
            docs.append(doc)
    for rider, orders in sorted(by_rider.items()):
        doc = plan_rider_statement(rider, period, orders, int(conf.get("INVOICING_RIDER_TAX_BPS")))
        if doc:
            docs.append(doc)
    with transaction.atomic(durable=True):
        done = set(
            Invoice.objects.filter(key__in=[d.key for d in docs]).values_list("key", flat=True)
        )
        docs = [d for d in docs if d.key not in done]
        asset = next((f.asset for f in facts.values()), "USD/2")
        # A concurrent month-end pass makes the insert fail on a unique key: nothing is
        # written, and the next run finds the other pass's documents.
        documents_insert(docs, asset_of={None: asset}, now=now)
    for doc in docs:
        result.add(doc)
    return result


def closed_periods_pending(*, now: datetime | None = None, months_back: int = 3) -> list[str]:
    now = now or timezone.now()
    periods = []
    year, month = now.year, now.month
    for _ in range(months_back):
        month -= 1
        if month == 0:
            year, month = year - 1, 12
        periods.append(f"{year:04d}-{month:02d}")
    return sorted(periods)


def invoices_sweep(*, limit: int = 5000) -> IssueResult:
    """Find and issue what is missing: paid orders without a decided model, delivered orders
    without documents, refunds and lost disputes without credit notes."""
    paid_undecided = (
        Order.objects.filter(paid_at__isnull=False)
        .exclude(pk__in=OrderInvoicing.objects.values("order_id"))
        .values_list("id", flat=True)[:limit]
    )
    orders_decide(list(paid_undecided))
    undocumented = set(
        Order.objects.filter(status=Order.Status.DELIVERED)
        .exclude(pk__in=OrderInvoicing.objects.filter(documented=True).values("order_id"))
        .values_list("id", flat=True)[:limit]
    )
    credited = Invoice.objects.exclude(credit_event="").values("credit_event")
    refunds = (
        Refund.objects.filter(status=Refund.Status.SUCCEEDED, source=Refund.Source.PARTIES)
        .exclude(Q(pk__in=[]))
        .values_list("id", "order_id")
    )
    done = set(credited.values_list("credit_event", flat=True))
    for refund_id, order_id in refunds:
        if f"refund:{refund_id}" not in done:
            undocumented.add(order_id)
    for dispute_id, order_id in Dispute.objects.filter(status="lost").values_list("id", "order_id"):
        if f"dispute:{dispute_id}" not in done:
            undocumented.add(order_id)
    return invoices_issue(sorted(undocumented)[:limit])
