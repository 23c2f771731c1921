"""The marketplace's money flows: Numscript templates (`<name>.num`), each with its spec file
(`<name>.num.specs.json`, run by `python manage.py numscript test marketplace/flows`).

`flow_post(name, vars=..., reference=..., metadata=...)` runs a template on the ledger; the
flow's name is added to the transaction metadata (`"flow": name`). Templates are read once per
process. Services choose the variables; the templates decide the postings.

| flow               | trigger                                   | reference                       |
|--------------------|-------------------------------------------|---------------------------------|
| coupon_reserve     | order placed with a coupon                | coupon-reserve:<order id>       |
| coupon_release     | payment failed / canceled / expired       | coupon-release:<order id>       |
| payment            | payment_intent.succeeded / charge.succeeded | payment:<ch id>               |
| payment_coupon     | the same, for an order with a coupon      | payment:<ch id>                 |
| split              | order delivered                           | delivery:<order id>             |
| refund_order       | refund confirmed, requested before delivery | refund:<re id>                |
| refund             | refund confirmed, requested after delivery  | refund:<re id>                |
| (revert)           | refund.failed: the refund is reverted     | refund-failed:<re id>           |
| dispute_withdrawn  | charge.dispute.funds_withdrawn            | dispute-withdrawn:<dp id>       |
| dispute_reinstated | charge.dispute.funds_reinstated           | dispute-reinstated:<dp id>      |
| campaign_fund      | staff funds a campaign                    | campaign-fund:<code>:<n>        |
| campaign_close     | staff closes a campaign                   | campaign-close:<code>           |
| coupon_release_closed | a reservation released after the close | coupon-release:<order id>       |
| topup              | topup.succeeded                           | topup:<tu id>                   |
| capital            | owners fund the bank account              | capital:<key>                   |
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ledger.services import PostResult
from ledger.services import flows as runner
from ledger.services.flows import FlowBook, monetary

__all__ = ["BOOK", "FLOWS", "FLOWS_DIR", "flow_post", "flow_script", "monetary"]

FLOWS_DIR = Path(__file__).resolve().parent

FLOWS = (
    "campaign_close",
    "campaign_fund",
    "capital",
    "coupon_release",
    "coupon_release_closed",
    "coupon_reserve",
    "dispute_reinstated",
    "dispute_withdrawn",
    "payment",
    "payment_coupon",
    "refund",
    "refund_order",
    "split",
    "topup",
)

BOOK = FlowBook(FLOWS_DIR, FLOWS, label="marketplace")


def flow_script(name: str) -> str:
    """The source of template `name` (raises KeyError for an unknown flow)."""
    return BOOK.script(name)


def flow_post(
    name: str,
    *,
    vars: Mapping[str, str],
    reference: str | None,
    metadata: Mapping[str, Any] | None = None,
    dry_run: bool = False,
) -> PostResult:
    """Run flow `name` on the ledger (single-transaction mode of `ledger.services.flows`).
    Idempotent on `reference` (same vars and metadata: the first transaction is returned,
    `replayed=True`). Raises the ledger's errors (InsufficientFunds when a no-overdraft source
    cannot pay, ReferenceConflict, ...)."""
    return runner.flow_post(
        BOOK, name, vars=vars, reference=reference, metadata=metadata, dry_run=dry_run
    )
