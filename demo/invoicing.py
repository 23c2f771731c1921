"""The invoicing stage of `manage.py demo` (`demo_invoicing(ctx, stdout)`): the day's
restaurants are spread over models A, B and C (and one trusted restaurant that the policy
moves to C), the day's documents are issued from the ledger, the month-end documents of the
day's month are issued as if it had closed, and the check runs. Prints a count per model
and kind and the check's result; writes one PDF per model to var/."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from django.conf import settings
from rich.console import Console
from rich.table import Table

from invoicing.check import invoices_check
from invoicing.models import Invoice, InvoicingProfile
from invoicing.render import invoice_pdf
from invoicing.services import invoices_issue_period, invoices_sweep, profile_set

MODELS = ("A", "B", "C")


def _profiles(restaurant_ids: list[int]) -> None:
    """A/B/C in turn, effective from the start of time so the day's orders use them."""
    from datetime import UTC, datetime

    start = datetime(2000, 1, 1, tzinfo=UTC)
    for index, rid in enumerate(sorted(restaurant_ids)):
        if InvoicingProfile.objects.filter(restaurant_id=rid).exists():
            continue
        profile_set(
            restaurant_id=rid,
            model=MODELS[index % 3],
            food_tax_bps=1000,
            trust_level=9 if index == len(restaurant_ids) - 1 else 1,
            legal_name=f"Restaurant {rid} SARL",
            address=f"{rid} Rue de la Demo, Paris",
            tax_id=f"FR{rid:011d}",
            effective_from=start,
        )


def demo_invoicing(ctx: Any, stdout: Any) -> None:
    console = getattr(ctx, "console", None)
    if not isinstance(console, Console):
        console = Console(file=stdout)
    settings.INVOICING_MERCHANT_MODE_TRUST = 9
    ids = [int(r["id"]) for r in getattr(ctx, "restaurants", [])]
    _profiles(ids)
    issued = invoices_sweep()
    periods = sorted({f"{d:%Y-%m}" for d in Invoice.objects.values_list("issued_at", flat=True)})
    for period in periods:
        invoices_issue_period(period=period)
    table = Table(title="Invoicing: documents issued from the ledger")
    table.add_column("model")
    table.add_column("kind")
    table.add_column("documents", justify="right")
    counts: dict[tuple[str, str], int] = {}
    for model, kind in Invoice.objects.values_list("model", "kind"):
        counts[(model or "-", kind)] = counts.get((model or "-", kind), 0) + 1
    for (model, kind), n in sorted(counts.items()):
        table.add_row(model, kind, str(n))
    console.print(table)
    for anomaly in issued.anomalies[:5]:
        console.print(f"[yellow]invoicing anomaly:[/yellow] {anomaly}")
    # The month is still open: the check treats month-end documents as pending, but they
    # were issued above for the demo, so check as of the first day of the next month.
    from datetime import UTC, datetime, timedelta

    later = datetime.now(UTC) + timedelta(days=32)
    result = invoices_check(now=later.replace(day=1))
    console.print(result.summary())
    for mismatch in result.mismatches[:10]:
        console.print(f"[red]mismatch:[/red] {mismatch}")
        ctx.errors.append(f"invoices check: {mismatch}")
    out = Path(settings.BASE_DIR) / "var"
    out.mkdir(exist_ok=True)
    written = []
    for model in MODELS:
        invoice = Invoice.objects.filter(model=model, kind="invoice").order_by("id").first()
        if invoice is None:
            continue
        path = out / f"invoice-model-{model}.pdf"
        path.write_bytes(invoice_pdf(invoice))
        written.append(str(path.relative_to(settings.BASE_DIR)))
    console.print("PDFs: " + ", ".join(written))
