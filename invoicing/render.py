"""HTML (a Django template) and PDF (WeasyPrint) of an issued document. Rendering reads only
the stored document: the same document always renders the same."""

from __future__ import annotations

from typing import Any

from django.template.loader import render_to_string

from invoicing.models import Invoice


def _money(amount: int, asset: str) -> str:
    _, _, decimals = asset.partition("/")
    places = int(decimals or 0)
    if not places:
        return f"{amount:,}"
    sign = "-" if amount < 0 else ""
    whole, cents = divmod(abs(amount), 10**places)
    return f"{sign}{whole:,}.{cents:0{places}d}"


def invoice_html(invoice: Invoice) -> str:
    asset = invoice.asset
    lines = list(invoice.lines.order_by("position"))
    breakdown: dict[int, list[int]] = {}
    for line in lines:
        row = breakdown.setdefault(line.tax_bps, [0, 0])
        row[0] += line.net
        row[1] += line.tax
    context: dict[str, Any] = {
        "invoice": invoice,
        "currency": asset.split("/")[0],
        "lines": [
            {
                "description": line.description,
                "rate": f"{line.tax_bps / 100:g}%",
                "net": _money(line.net, asset),
                "tax": _money(line.tax, asset),
                "gross": _money(line.gross, asset),
            }
            for line in lines
        ],
        "totals": {
            "net": _money(invoice.total_net, asset),
            "tax": _money(invoice.total_tax, asset),
            "gross": _money(invoice.total_gross, asset),
        },
        "breakdown": [
            {"rate": f"{bps / 100:g}%", "net": _money(n, asset), "tax": _money(t, asset)}
            for bps, (n, t) in sorted(breakdown.items())
        ],
    }
    return render_to_string("invoicing/document.html", context)


def invoice_pdf(invoice: Invoice) -> bytes:
    from weasyprint import HTML  # imported here: it loads Pango, which web workers may not need

    return bytes(HTML(string=invoice_html(invoice)).write_pdf())
