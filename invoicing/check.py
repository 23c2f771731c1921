"""The tie-out (`manage.py invoices check [--period YYYY-MM]`): proves, from the ledger, that the
documents say what the books say.

Per order (read from the ledger by `ledger_facts`):
- nothing is documented before the split (delivery);
- the customer: the totals of the customer's documents (invoices less credit notes) equal what
  the ledger kept from them (the split less the coupon, less refunds and lost disputes after
  delivery);
- each party account the documents justify (the restaurant, platform:fees, platform:losses,
  platform:disputes, the campaign's funding): lines naming it less lines it pays equal its
  ledger movement for the order. Model B's commission invoice (with the compensation of the
  refunds the platform bore) only exists once the month is closed: until then the accounts
  it justifies are reported as pending (`domain.month_end_pending`).
Per rider and closed month: the statement equals the rider's ledger movements of the month.
Per document: totals equal the sums of its lines. Per series and year: numbers 1..N, no gap.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime

from django.db.models import Count, F, Max, Sum
from django.utils import timezone

from invoicing.domain import month_end_pending, month_of, rider_ledger_by_month
from invoicing.ledger_facts import order_facts
from invoicing.models import Invoice, InvoiceLine, OrderInvoicing
from invoicing.services import period_orders
from marketplace.models import Order


@dataclass
class CheckResult:
    orders: int = 0
    documents: int = 0
    pending: int = 0
    mismatches: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.mismatches

    def summary(self) -> str:
        state = "OK" if self.ok else f"{len(self.mismatches)} MISMATCH(ES)"
        return (
            f"invoices check: {state}: {self.orders} orders, {self.documents} documents, "
            f"{self.pending} pending month-end"
        )


# Order ids (or document keys) per statement: PostgreSQL takes at most 65,535 parameters.
CHECK_CHUNK = 5000


def _closed(period: str, now: datetime) -> bool:
    return period < month_of(now)


def invoices_check(*, period: str | None = None, now: datetime | None = None) -> CheckResult:
    now = now or timezone.now()
    result = CheckResult()
    if period:
        ids = period_orders(period)
    else:
        # every paid or delivered order, and every order with a document whatever its state
        # (a document before the split is a mismatch the loop below reports)
        ids = sorted(
            set(Order.objects.filter(status__in=["paid", "delivered"]).values_list("id", flat=True))
            | set(
                Invoice.objects.filter(order_id__isnull=False)
                .values_list("order_id", flat=True)
                .distinct()
            )
        )
    # The order ids go into queries a chunk at a time: a month of a busy marketplace passes
    # PostgreSQL's 65,535 parameters per statement (`bench invoicing`: 100,000 orders).
    parts = [ids[start : start + CHECK_CHUNK] for start in range(0, len(ids), CHECK_CHUNK)]
    models: dict[int, str] = {}
    lines_by_order: dict[int, list[tuple]] = defaultdict(list)
    rider_docs: dict[tuple[str, str], int] = defaultdict(int)
    for part in parts:
        models.update(
            OrderInvoicing.objects.filter(order_id__in=part).values_list("order_id", "model")
        )
        for row in InvoiceLine.objects.filter(order_id__in=part).values_list(
            "order_id",
            "invoice__customer_facing",
            "invoice__kind",
            "invoice__period",
            "account",
            "counter_account",
            "gross",
            "invoice__recipient",
        ):
            lines_by_order[row[0]].append(row)
    facts = order_facts(ids)
    for oid in ids:
        f = facts.get(oid)
        lines = lines_by_order.get(oid, [])
        result.orders += 1
        if f is None or not f.delivered:
            if lines:
                result.mismatches.append(f"order {oid}: documents before any split in the ledger")
            continue
        customer = sum(g for _, cf, _, _, _, _, g, _ in lines if cf)
        if customer != f.customer_net:
            result.mismatches.append(
                f"order {oid}: customer documents total {customer}, ledger {f.customer_net}"
            )
        period = month_of(f.split_at) if f.split_at else ""
        model = models.get(oid, "")
        pending = month_end_pending(f, model, lambda month: _closed(month, now))
        if pending:
            result.pending += 1
        moves = f.ledger_movements()
        accounts = (
            set(moves) | {a for *_, a, _, _, _ in lines if a} | {c for *_, c, _, _ in lines if c}
        )
        for account in sorted(accounts):
            if account.startswith("riders:"):
                continue
            if account in pending:
                continue
            documented = sum(g for *_, a, c, g, _ in lines if a == account) - sum(
                g for *_, a, c, g, _ in lines if c == account
            )
            if documented != moves.get(account, 0):
                result.mismatches.append(
                    f"order {oid} (model {model}): {account} documented {documented}, "
                    f"ledger {moves.get(account, 0)}"
                )
        for (rider, month), amount in rider_ledger_by_month(f).items():
            if _closed(month, now) and (not period or month == period):
                rider_docs[(rider, month)] += amount
    # riders, closed months: the statement lines of the month against the ledger (one query
    # for every statement, lines of the checked orders only)
    keys = {f"rider:{rider}:{month}": (rider, month) for rider, month in rider_docs}
    wanted = set(ids)
    statements: dict[tuple[str, str], int] = defaultdict(int)
    names = sorted(keys)
    for start in range(0, len(names), CHECK_CHUNK):
        for key, order_id, gross in InvoiceLine.objects.filter(
            invoice__kind="rider_statement", invoice__key__in=names[start : start + CHECK_CHUNK]
        ).values_list("invoice__key", "order_id", "gross"):
            if order_id in wanted:
                statements[keys[key]] += gross
    for (rider, month), expected in sorted(rider_docs.items()):
        documented = statements.get((rider, month), 0)
        if documented != expected:
            result.mismatches.append(f"{rider} {month}: statement {documented}, ledger {expected}")
    # documents: totals = sum of lines; numbering: 1..N per series and year
    # (of a period: the documents of its orders, and its month-end documents; each counted
    # once, in bounded statements)
    if period:
        month_docs = [
            pk
            for pk, order_id in Invoice.objects.filter(period=f"{period}-01").values_list(
                "pk", "order_id"
            )
            if order_id is None or order_id not in wanted
        ]
        doc_sets = [Invoice.objects.filter(order_id__in=part) for part in parts] + [
            Invoice.objects.filter(pk__in=month_docs[start : start + CHECK_CHUNK])
            for start in range(0, len(month_docs), CHECK_CHUNK)
        ]
    else:
        doc_sets = [Invoice.objects.all()]
    bad_totals = 0
    for docs in doc_sets:
        result.documents += docs.count()
        if bad_totals >= 20:  # the first twenty are reported
            continue
        bad = (
            docs.annotate(lines_sum=Sum("lines__gross"))
            .exclude(total_gross=F("lines_sum"))
            .values_list("display_number", "total_gross", "lines_sum")[: 20 - bad_totals]
        )
        for number, total, lines_sum in bad:
            bad_totals += 1
            result.mismatches.append(f"{number}: total {total}, lines {lines_sum}")
    for series, year, count, top in (
        Invoice.objects.values("series", "year")
        .annotate(n=Count("id"), top=Max("number"))
        .values_list("series", "year", "n", "top")
    ):
        if count != top:
            result.mismatches.append(f"series {series}-{year}: {count} documents, last {top}: gap")
    return result
