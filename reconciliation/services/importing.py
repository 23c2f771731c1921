"""Import of Stripe balance transactions and of Stripe's balance.

Pages through `GET /v1/balance_transactions?created[gte]&created[lt]&expand[]=data.source`
with the seam's auto-paging, one page (100) at a time, and stores each by its txn id: new ids
are inserted, ids whose Stripe copy changed (status pending -> available) are updated, the
rest are left untouched, so a re-import of the same data writes nothing. Stripe calls happen
with no database transaction open; each page is written in its own short transaction.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any

from django.db import transaction
from django.utils import timezone

from reconciliation.matching import source_type_of
from reconciliation.models import StripeBalanceTransaction
from stripe_gateway.client import StripeGateway, from_stripe_amount, get_gateway

logger = logging.getLogger(__name__)

PAGE = 100
# Fields whose change makes an imported row "changed" (the rest is derived from them or is a
# snapshot, like the expanded source).
_COMPARED = (
    "source_id",
    "type",
    "reporting_category",
    "amount",
    "fee",
    "net",
    "currency",
    "status",
    "created",
    "available_on",
)

Progress = Callable[[int, int | None], None]  # (imported so far, unix `created` of the last)


@dataclass
class ImportResult:
    seen: int = 0
    created: int = 0
    updated: int = 0
    unchanged: int = 0

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


def _ts(value: Any) -> datetime:
    return datetime.fromtimestamp(int(value), tz=UTC)


def balance_transaction_row(data: Mapping[str, Any]) -> StripeBalanceTransaction:
    """Our row for one balance transaction dict as Stripe returns it (source expanded or not)."""
    source = data.get("source")
    expanded = source if isinstance(source, dict) else None
    source_id = expanded.get("id") if expanded else source
    if source_id is not None and not isinstance(source_id, str):
        source_id = str(source_id)
    currency = str(data["currency"]).lower()
    _amount, asset = from_stripe_amount(int(data["amount"]), currency)
    raw = dict(data)
    raw["source"] = source_id
    return StripeBalanceTransaction(
        id=str(data["id"]),
        source_id=source_id or None,
        source_key=source_id or str(data["id"]),
        source_type=source_type_of(source_id, expanded),
        type=str(data.get("type") or ""),
        reporting_category=str(data.get("reporting_category") or ""),
        amount=int(data["amount"]),
        fee=int(data.get("fee") or 0),
        net=int(data["net"]),
        currency=currency,
        asset=asset,
        status=str(data.get("status") or ""),
        created=_ts(data["created"]),
        available_on=_ts(data.get("available_on") or data["created"]),
        raw=raw,
        source_object=expanded,
    )


def balance_transactions_store(rows: Iterable[Mapping[str, Any]]) -> ImportResult:
    """Store one batch of balance transaction dicts (insert new, update changed)."""
    result = ImportResult()
    incoming: dict[str, StripeBalanceTransaction] = {}
    for data in rows:
        row = balance_transaction_row(data)
        incoming[row.id] = row  # the same id twice in a batch: the last copy wins
    result.seen = len(incoming)
    if not incoming:
        return result
    with transaction.atomic():
        existing = {
            row.id: row
            for row in StripeBalanceTransaction.objects.select_for_update()
            .filter(id__in=list(incoming))
            .only("id", *_COMPARED)
        }
        new = [row for txn_id, row in incoming.items() if txn_id not in existing]
        changed = []
        now = timezone.now()
        for txn_id, row in incoming.items():
            old = existing.get(txn_id)
            if old is None:
                continue
            if any(getattr(old, f) != getattr(row, f) for f in _COMPARED):
                row.updated_at = now
                changed.append(row)
        # A concurrent import of the same page may insert first: those rows are then simply
        # not counted as created here.
        created = StripeBalanceTransaction.objects.bulk_create(new, ignore_conflicts=True)
        if changed:
            StripeBalanceTransaction.objects.bulk_update(
                changed,
                [
                    *_COMPARED,
                    "source_key",
                    "source_type",
                    "asset",
                    "raw",
                    "source_object",
                    "updated_at",
                ],
            )
    result.created = len(created)
    result.updated = len(changed)
    result.unchanged = result.seen - result.created - result.updated
    for row in changed:
        logger.info("reconciliation: balance transaction %s changed at Stripe", row.id)
    return result


def balance_transactions_import(
    *,
    window_start: datetime,
    window_end: datetime,
    gateway: StripeGateway | None = None,
    progress: Progress | None = None,
) -> ImportResult:
    """Import every balance transaction created in [window_start, window_end).

    Must be called with no transaction open (it calls Stripe between page writes)."""
    gateway = gateway or get_gateway()
    total = ImportResult()
    page: list[dict[str, Any]] = []

    def flush() -> None:
        stored = balance_transactions_store(page)
        total.seen += stored.seen
        total.created += stored.created
        total.updated += stored.updated
        total.unchanged += stored.unchanged
        if progress is not None:
            progress(total.seen, int(page[-1]["created"]) if page else None)
        page.clear()

    for data in gateway.balance_transactions_iter(
        created_gte=int(window_start.timestamp()),
        created_lt=_ceil_ts(window_end),
        expand_source=True,
        page_size=PAGE,
    ):
        page.append(data)
        if len(page) >= PAGE:
            flush()
    if page:
        flush()
    return total


def _ceil_ts(moment: datetime) -> int:
    """Stripe filters on whole seconds: [start, end) with a fractional end rounds up."""
    seconds = moment.timestamp()
    return int(seconds) if seconds == int(seconds) else int(seconds) + 1


def stripe_balance_fetch(*, gateway: StripeGateway | None = None) -> dict[str, dict[str, int]]:
    """Stripe's balance per asset: {"USD/2": {"available": n, "pending": n}}."""
    gateway = gateway or get_gateway()
    balance = gateway.balance_retrieve()
    result: dict[str, dict[str, int]] = {}
    for part in ("available", "pending"):
        for entry in balance.get(part) or []:
            _amount, asset = from_stripe_amount(int(entry["amount"]), str(entry["currency"]))
            slot = result.setdefault(asset, {"available": 0, "pending": 0})
            slot[part] += int(entry["amount"])
    return result
