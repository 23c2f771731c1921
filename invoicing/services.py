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
from datetime import UTC, date, datetime
from typing import Any

from django.db import IntegrityError, transaction
from django.db.models import Q
from django.utils import timezone

from invoicing import conf
from invoicing.domain import (
    PLATFORM,
    Doc,
    InvoicingRuleError,
    IssuedDoc,
    OrderFacts,
    Rates,
    month_of,
    plan_commission_invoice,
    plan_credit_notes,
    plan_order_documents,
    plan_rider_statement,
)
from invoicing.ledger_facts import order_facts
from invoicing.lock_objects import order_invoicing_lock, series_lock
from invoicing.models import (
    Invoice,
    InvoiceLine,
    InvoicingAnomaly,
    InvoicingProfile,
    Model,
    NumberSeries,
    OrderInvoicing,
)
from ledger.retry import retry_on_conflict
from marketplace.models import Customer, Dispute, Order, Refund, Restaurant, Rider
from marketplace.models.restaurants import ledger_id

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
    profile in force when each was paid. Returns how many were decided."""
    rows = list(
        Order.objects.filter(pk__in=list(order_ids), paid_at__isnull=False)
        .exclude(pk__in=OrderInvoicing.objects.values("order_id"))
        .values_list("id", "restaurant_id", "paid_at")
    )
    if not rows:
        return 0
    profiles = _profiles_at((r, at) for _, r, at in rows if at is not None)
    created = []
    for oid, restaurant_id, paid_at in rows:
        profile = profiles[(restaurant_id, paid_at)] if paid_at is not None else None
        model, reason = model_decide(profile)
        created.append(OrderInvoicing(order_id=oid, model=model, reason=reason, profile=profile))
    OrderInvoicing.objects.bulk_create(created, ignore_conflicts=True)
    return len(created)


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
        locked.model, locked.reason = model, reason[:200]
        locked.save(update_fields=["model", "reason"])
    return locked


# --- issuing ----------------------------------------------------------------------------------


def series_of(party: str) -> str:
    if party == PLATFORM:
        return "P"
    prefix, _, number = party.partition(":")
    return f"{'R' if prefix == 'restaurants' else 'D'}{int(number):04d}"


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


def _legal_mention(doc: Doc, names: dict[str, str], original: str = "") -> str:
    platform = names[PLATFORM]
    issuer = names.get(doc.issuer, doc.issuer)
    if doc.kind == "rider_statement":
        text = (
            f"Self-billing: statement issued by {platform} in the name and on behalf of the "
            f"rider {issuer}, who accepts it as their invoice (auto-facturation)."
        )
    elif doc.kind == "self_billing" or (doc.kind == "credit_note" and not doc.customer_facing):
        text = (
            f"Self-billing: invoice issued by {platform}, the customer, in the name and on "
            f"behalf of the supplier {issuer} (auto-facturation). Model C: merchant mode."
        )
    elif doc.kind == "commission":
        text = f"Model B: {platform}'s commission and delivery service to the restaurant."
    elif doc.issuer != PLATFORM:
        text = (
            f"Invoice issued by {platform} in the name and on behalf of {issuer} "
            f"(billing mandate). Model {doc.model}: "
            + (
                "the food; the platform invoices its own fees separately."
                if doc.model == "A"
                else "the restaurant sells the whole order; the platform invoices it its commission."
            )
        )
    else:
        text = (
            f"Invoice of {platform} for its own services (model A)."
            if doc.model == "A"
            else f"{platform} sells as merchant of record (model C)."
        )
    if original:
        text = f"Credit note on {original}. " + text
    return text


def _party_names(docs: list[Doc]) -> dict[str, dict[str, str]]:
    """Issuer and recipient details at issue time."""
    platform = dict(conf.get("INVOICING_PLATFORM"))
    parties = {d.issuer for d in docs} | {d.recipient for d in docs}
    details: dict[str, dict[str, str]] = {PLATFORM: platform}
    restaurant_ids = [int(p.split(":")[1]) for p in parties if p.startswith("restaurants:")]
    rider_ids = [int(p.split(":")[1]) for p in parties if p.startswith("riders:")]
    customer_ids = [int(p.split(":")[1]) for p in parties if p.startswith("customer:")]
    profiles: dict[int, InvoicingProfile] = {}
    for profile in InvoicingProfile.objects.filter(restaurant_id__in=restaurant_ids).order_by(
        "effective_from", "id"
    ):
        profiles[profile.restaurant_id] = profile
    for r in Restaurant.objects.filter(pk__in=restaurant_ids).values("id", "name", "email"):
        p = profiles.get(r["id"])
        details[f"restaurants:{ledger_id(r['id'])}"] = {
            "name": (p.legal_name if p and p.legal_name else r["name"]),
            "address": p.address if p else "",
            "tax_id": p.tax_id if p else "",
            "email": r["email"],
        }
    for r in Rider.objects.filter(pk__in=rider_ids).values("id", "name", "email"):
        details[f"riders:{ledger_id(r['id'])}"] = {"name": r["name"], "email": r["email"]}
    for c in Customer.objects.filter(pk__in=customer_ids).values("id", "name", "email"):
        details[f"customer:{c['id']}"] = {"name": c["name"] or c["email"], "email": c["email"]}
    for party in parties:
        details.setdefault(party, {"name": party})
    return details


def _insert(docs: list[Doc], *, asset_of: dict[int | None, str], now: datetime) -> list[Invoice]:
    """Number and insert planned documents (inside the caller's transaction, after the orders'
    locks): originals first, so that credit notes can point at them."""
    if not docs:
        return []
    year = now.astimezone(UTC).year
    series = series_lock((series_of(d.issuer), year) for d in docs)
    details = _party_names(docs)
    names = {party: d.get("name", party) for party, d in details.items()}
    originals = {
        inv.key: inv
        for inv in Invoice.objects.filter(key__in=[d.original_key for d in docs if d.original_key])
    }
    created: list[Invoice] = []
    for phase in (False, True):
        batch: list[tuple[Invoice, Doc]] = []
        for doc in docs:
            if bool(doc.original_key) != phase:
                continue
            row = series[(series_of(doc.issuer), year)]
            row.last_number += 1
            original = originals.get(doc.original_key) if doc.original_key else None
            lines = [(line, *line.net_tax) for line in doc.lines]
            invoice = Invoice(
                key=doc.key,
                kind=doc.kind,
                model=doc.model,
                series=row.series,
                year=year,
                number=row.last_number,
                display_number=f"{row.series}-{year}-{row.last_number:06d}",
                issuer=doc.issuer,
                recipient=doc.recipient,
                customer_facing=doc.customer_facing,
                issuer_details=details[doc.issuer],
                recipient_details=details[doc.recipient],
                legal_mention=_legal_mention(
                    doc, names, original.display_number if original else ""
                ),
                order_id=doc.order_id,
                period=date.fromisoformat(f"{doc.period}-01") if doc.period else None,
                credit_event=doc.key.rsplit(":", 1)[0] if doc.kind == "credit_note" else "",
                original=original,
                asset=asset_of.get(doc.order_id) or asset_of.get(None) or "USD/2",
                total_gross=sum(line.gross for line, _, _ in lines),
                total_net=sum(net for _, net, _ in lines),
                total_tax=sum(tax for _, _, tax in lines),
                ledger_transactions=doc.ledger_txs,
                issued_at=now,
            )
            batch.append((invoice, doc))
        if not batch:
            continue
        Invoice.objects.bulk_create([invoice for invoice, _ in batch])
        for invoice, _ in batch:
            originals[invoice.key] = invoice
        InvoiceLine.objects.bulk_create(
            [
                InvoiceLine(
                    invoice=invoice,
                    position=position,
                    order_id=line.order_id,
                    kind=line.kind,
                    description=line.description[:300],
                    gross=line.gross,
                    tax_bps=line.tax_bps,
                    tax=line.net_tax[1],
                    net=line.net_tax[0],
                    account=line.account,
                    counter_account=line.counter_account,
                    ledger_transaction_id=line.tx_id,
                )
                for invoice, doc in batch
                for position, line in enumerate(doc.lines, start=1)
            ]
        )
        created += [invoice for invoice, _ in batch]
    NumberSeries.objects.bulk_update(list(series.values()), ["last_number"], batch_size=1000)
    return created


def _rates(profile: InvoicingProfile | None) -> Rates:
    services = conf.get("INVOICING_SERVICES_TAX_BPS")
    if profile is None or profile.food_tax_bps is None:
        raise InvoicingRuleError(
            "the restaurant has no food tax rate (set its invoicing profile)",
            code="tax_rate_missing",
        )
    if services is None:
        raise InvoicingRuleError(
            "INVOICING_SERVICES_TAX_BPS is not configured", code="tax_rate_missing"
        )
    return Rates(profile.food_tax_bps, int(services), int(conf.get("INVOICING_RIDER_TAX_BPS")))


def _plan_order(
    facts: OrderFacts, decision: OrderInvoicing, existing: dict[str, Invoice], credited: dict
) -> list[Doc]:
    """Everything still to issue for one order (raises InvoicingRuleError)."""
    rates = _rates(decision.profile)
    model = decision.model
    planned: list[Doc] = []
    if facts.delivered and not decision.documented:
        planned = [d for d in plan_order_documents(facts, model, rates) if d.key not in existing]
    role_docs: dict[str, IssuedDoc] = {}
    for role in ("restaurant", "platform", "self_billing"):
        key = f"order:{facts.order_id}:{role}"
        new = next((d for d in planned if d.key == key), None)
        if key in existing:
            inv = existing[key]
            first = inv.lines.order_by("position").first() if not new else None
            bps = first.tax_bps if first else rates.food_bps
            role_docs[role] = IssuedDoc(key, inv.total_gross, credited.get(key, 0), bps)
        elif new is not None:
            role_docs[role] = IssuedDoc(key, new.total, 0, new.lines[0].tax_bps)
    done_events = {inv.credit_event for inv in existing.values() if inv.credit_event}
    for event in facts.credits:
        if event.key in done_events:
            continue
        notes = plan_credit_notes(facts, model, event, role_docs)
        for note in notes:  # later events of the same batch see the room this one used
            role = note.key.rsplit(":", 1)[1]
            role_docs[role].credited += -note.total
        planned += notes
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
    facts_by_order = order_facts(ids)
    if not facts_by_order:
        return
    orders_decide(facts_by_order)
    now = now or timezone.now()
    local = IssueResult()
    with transaction.atomic(durable=True):
        decisions = order_invoicing_lock(facts_by_order)
        profiles = {
            p.pk: p
            for p in InvoicingProfile.objects.filter(
                pk__in=[d.profile_id for d in decisions.values() if d.profile_id]
            )
        }
        existing: dict[int, dict[str, Invoice]] = defaultdict(dict)
        for inv in Invoice.objects.filter(order_id__in=list(decisions)):
            existing[inv.order_id][inv.key] = inv  # type: ignore[index]
        credited: dict[str, int] = defaultdict(int)
        for inv in Invoice.objects.filter(
            order_id__in=list(decisions), kind=Invoice.Kind.CREDIT_NOTE
        ).select_related("original"):
            if inv.original is not None:
                credited[inv.original.key] += -inv.total_gross
        to_issue: list[Doc] = []
        documented: list[int] = []
        for oid, decision in decisions.items():
            decision.profile = profiles.get(decision.profile_id) if decision.profile_id else None
            facts = facts_by_order[oid]
            try:
                docs = _plan_order(facts, decision, existing[oid], credited)
            except InvoicingRuleError as exc:
                message = f"order {oid}: {exc}"
                anomaly_record(kind=exc.code, key=f"order:{oid}", message=message, order_id=oid)
                local.anomalies.append(message)
                continue
            to_issue += docs
            if facts.delivered and not decision.documented:
                documented.append(oid)
        _insert(to_issue, asset_of={f.order_id: f.asset for f in facts_by_order.values()}, now=now)
        if documented:
            OrderInvoicing.objects.filter(order_id__in=documented).update(documented=True)
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
    facts = order_facts(period_orders(period))
    models_by_order = dict(
        OrderInvoicing.objects.filter(order_id__in=list(facts)).values_list("order_id", "model")
    )
    by_restaurant: dict[str, list[OrderFacts]] = defaultdict(list)
    by_rider: dict[str, list[OrderFacts]] = defaultdict(list)
    for f in facts.values():
        if f.split_at and month_of(f.split_at) == period and models_by_order.get(f.order_id) == "B":
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
        try:
            _insert(docs, asset_of={None: asset}, now=now)
        except IntegrityError:
            raise  # a concurrent month-end pass: retry_on_conflict does not cover it; rerun
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
