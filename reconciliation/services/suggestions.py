"""Turn the matcher's generic suggestions into precise ones, with a repair where it is safe.

Runs after the matching transaction committed, with no transaction open (it may call Stripe):

- `fee_missing`: the fee to book, under which balance transaction -> safe `book_fee`;
- `missing_in_ledger` of a standalone Stripe fee (no source, category `fee`) -> safe `book_fee`;
- `missing_in_ledger`: the webhook event that should have booked it, looked up in the inbox
  (`marketplace.models.StripeEvent`) by its `data.object` id, else in Stripe's event list
  (a dropped delivery never reached the inbox) -> safe `replay_event` when a handler exists;
- `matched_twice`: identical primary ledger transactions whose removal leaves an exact match
  -> safe `revert_duplicates`; anything less clear-cut keeps the generic advice.

Only problem items are read here, in chunks; matched items are never loaded.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.db import connection
from django.db.models.fields.json import KT

from config.errors import ApplicationError
from ledger.models import Posting
from ledger.models import Transaction as LedgerTransaction
from reconciliation import conf
from reconciliation.matching import (
    EVENT_TYPES_BY_SOURCE,
    FLOW_FEE,
    FLOW_REVERT,
    META_FLOW,
    META_OBJECT,
    META_TXN,
    SOURCE_LABELS,
    STRIPE_BALANCE,
    STRIPE_FEES,
    Outcome,
    format_money,
    related_ids,
)
from reconciliation.models import ReconciliationItem, ReconciliationRun, StripeBalanceTransaction
from reconciliation.services.matching import ledger_account_id
from stripe_gateway.client import StripeGateway, get_gateway
from stripe_gateway.models import StripeEvent
from stripe_gateway.registry import HANDLERS

logger = logging.getLogger(__name__)

Item = ReconciliationItem
CHUNK = 500
ALL_EVENT_TYPES = tuple(dict.fromkeys(t for ts in EVENT_TYPES_BY_SOURCE.values() for t in ts))
_PENDING_STATUSES = {"received", "deferred", "failed", "processing"}
_UPDATE_FIELDS = ["suggested_action", "repair", "safe", "repair_status"]


def _chunks(queryset: Any) -> Iterator[list[ReconciliationItem]]:
    batch: list[ReconciliationItem] = []
    for item in queryset.iterator(chunk_size=CHUNK):
        batch.append(item)
        if len(batch) >= CHUNK:
            yield batch
            batch = []
    if batch:
        yield batch


def _offer(item: ReconciliationItem, text: str, repair: dict[str, Any] | None, safe: bool) -> None:
    item.suggested_action = text
    item.repair = repair
    item.safe = bool(repair) and safe
    item.repair_status = Item.RepairStatus.PENDING if item.safe else Item.RepairStatus.NONE


def suggestions_enrich(*, run: ReconciliationRun, gateway: StripeGateway | None = None) -> None:
    """Refine the suggestions of the run's problem items (see module doc)."""
    items = Item.objects.filter(run=run)
    for batch in _chunks(items.filter(outcome=Outcome.FEE_MISSING)):
        _fees(batch)
    for batch in _chunks(items.filter(outcome=Outcome.MATCHED_TWICE)):
        _duplicates(batch)
    limit = int(conf.get("RECONCILIATION_SUGGEST_LIMIT"))
    missing = list(items.filter(outcome=Outcome.MISSING_IN_LEDGER).order_by("id")[:limit])
    if missing:
        _missing(missing, gateway)


# --- fees ----------------------------------------------------------------------------------
def _fee_txns(
    items: Iterable[ReconciliationItem],
) -> dict[tuple[str, str], StripeBalanceTransaction]:
    """Per (key, asset): the balance transaction with the largest fee (ties: smallest id)."""
    keys = {(i.key, i.asset) for i in items}
    best: dict[tuple[str, str], StripeBalanceTransaction] = {}
    rows = StripeBalanceTransaction.objects.filter(source_key__in=[k for k, _a in keys]).only(
        "id", "source_key", "asset", "fee", "created", "reporting_category", "net"
    )
    for row in rows.order_by("id"):
        key = (row.source_key, row.asset)
        if key in keys and (key not in best or row.fee > best[key].fee):
            best[key] = row
    return best


def _fee_repair(item: ReconciliationItem, txn: StripeBalanceTransaction, amount: int) -> dict:
    return {
        "action": "book_fee",
        "stripe_object": item.key,
        "balance_transaction": txn.id,
        "asset": item.asset,
        "amount": amount,
        "timestamp": txn.created.isoformat(),
    }


def _fees(batch: list[ReconciliationItem]) -> None:
    txns = _fee_txns(batch)
    for item in batch:
        txn = txns.get((item.key, item.asset))
        gap = item.stripe_fee - item.ledger_fee
        if txn is None or gap <= 0:
            continue
        if item.difference == 0:
            # The money on stripe:balance is right: the fee went through another account.
            # Moving it is a decision about the books, not a missing booking: review only.
            _offer(
                item,
                f"the ledger's net for {item.key} matches Stripe, but its Stripe fee "
                f"{format_money(item.asset, gap)} ({txn.id}) was booked from another account "
                f"than {STRIPE_FEES}: book the fee {STRIPE_FEES} -> {STRIPE_BALANCE} in the "
                f"flow that posts it (or reclassify: {STRIPE_FEES} -> {STRIPE_BALANCE} and "
                f"{STRIPE_BALANCE} -> the account that bore it, {format_money(item.asset, gap)})",
                None,
                safe=False,
            )
            continue
        _offer(
            item,
            f"Stripe fee {format_money(item.asset, gap)} of {item.key} ({txn.id}) is not booked: "
            f"book it {STRIPE_FEES} -> {STRIPE_BALANCE} (reference stripe-fee:{txn.id}; "
            "the run books it automatically)",
            _fee_repair(item, txn, gap),
            safe=True,
        )
    Item.objects.bulk_update(batch, _UPDATE_FIELDS)


# --- duplicates ----------------------------------------------------------------------------
@dataclass
class _LedgerTx:
    id: int
    txn: str | None
    postings: tuple[tuple[int, int, str, int], ...]  # (source id, destination id, asset, amount)
    net: int  # Stripe's sign, on stripe:balance, for the item's asset
    fee: int


def _primary_transactions(key: str, asset: str, sb: int, fees: int) -> list[_LedgerTx]:
    """The item's ledger transactions that are neither fees, reverts, nor reverted."""
    table = LedgerTransaction._meta.db_table
    with connection.cursor() as cursor:
        # `->>` (PostgreSQL, SQLite 3.38+): the expression the matcher's index serves.
        cursor.execute(
            f"SELECT id FROM {table} WHERE (metadata ->> '{META_OBJECT}') = %s",
            [key],
        )
        ids = [row[0] for row in cursor.fetchall()]
    rows = (
        LedgerTransaction.objects.filter(id__in=ids, reverts__isnull=True)
        .exclude(reverted_by__isnull=False)
        .values_list("id", "metadata")
        .order_by("id")
    )
    txs: dict[int, _LedgerTx] = {}
    for tx_id, metadata in rows:
        flow = (metadata or {}).get(META_FLOW)
        if flow in (FLOW_FEE, FLOW_REVERT):
            continue
        txs[tx_id] = _LedgerTx(tx_id, (metadata or {}).get(META_TXN), (), 0, 0)
    postings = Posting.objects.filter(transaction_id__in=list(txs)).order_by(
        "transaction_id", "index"
    )
    grouped: dict[int, list[tuple[int, int, str, int]]] = defaultdict(list)
    for p in postings.values_list(
        "transaction_id", "source_id", "destination_id", "asset", "amount"
    ):
        grouped[p[0]].append((p[1], p[2], p[3], p[4]))
    for tx_id, tx in txs.items():
        tx.postings = tuple(grouped.get(tx_id, ()))
        for src, dst, posting_asset, amount in tx.postings:
            if posting_asset != asset:
                continue
            if src == sb:
                tx.net += amount
            if dst == sb:
                tx.net -= amount
            if src == fees and dst == sb:
                tx.fee += amount
            if src == sb and dst == fees:
                tx.fee -= amount
    return list(txs.values())


def _duplicates(batch: list[ReconciliationItem]) -> None:
    sb, fees = ledger_account_id(STRIPE_BALANCE), ledger_account_id(STRIPE_FEES)
    for item in batch:
        groups: dict[tuple[Any, ...], list[_LedgerTx]] = defaultdict(list)
        for tx in _primary_transactions(item.key, item.asset, sb, fees):
            groups[(tx.txn, tx.postings)].append(tx)
        for copies in groups.values():
            if len(copies) < 2 or copies[0].net == 0:
                continue
            extra = copies[1:]
            if (
                item.ledger_net - len(extra) * copies[0].net == item.stripe_net
                and item.ledger_fee - len(extra) * copies[0].fee == item.stripe_fee
            ):
                ids = [tx.id for tx in extra]
                names = ", ".join(str(i) for i in ids)
                _offer(
                    item,
                    f"ledger transaction(s) {names} duplicate transaction {copies[0].id} for "
                    f"{item.key} (same postings{', same ' + copies[0].txn if copies[0].txn else ''}"
                    f"): revert them (ledger.services.transaction_revert); "
                    f"the ledger then matches Stripe's {format_money(item.asset, item.stripe_net)}",
                    {
                        "action": "revert_duplicates",
                        "stripe_object": item.key,
                        "original": copies[0].id,
                        "transactions": ids,
                    },
                    safe=True,
                )
                break
    Item.objects.bulk_update(batch, _UPDATE_FIELDS)


# --- missing in the ledger -------------------------------------------------------------------
@dataclass
class _Candidate:
    stripe_id: str
    type: str
    object_id: str
    created: datetime | None = None
    status: str | None = None  # inbox status; None when only found at Stripe
    note: str = ""


def _choose(candidates: list[_Candidate], wanted: tuple[str, ...]) -> _Candidate | None:
    """The event to replay: a handled type first, then the most specific type, then newest."""

    def rank(c: _Candidate) -> tuple[int, int, float]:
        handled = 0 if c.type in HANDLERS else 1
        newest = -c.created.timestamp() if c.created is not None else 0.0
        return handled, wanted.index(c.type), newest

    usable = [c for c in candidates if c.type in wanted]
    return min(usable, key=rank) if usable else None


def _missing(items: list[ReconciliationItem], gateway: StripeGateway | None) -> None:
    bts = defaultdict(list)
    for row in StripeBalanceTransaction.objects.filter(source_key__in=[i.key for i in items]).only(
        "id",
        "source_key",
        "asset",
        "source_object",
        "created",
        "source_type",
        "net",
        "reporting_category",
        "fee",
        "source_id",
    ):
        bts[(row.source_key, row.asset)].append(row)

    wanted: dict[int, tuple[str, ...]] = {}
    related: dict[int, set[str]] = {}
    since: dict[int, datetime] = {}
    needs_event: list[ReconciliationItem] = []
    for item in items:
        rows = bts.get((item.key, item.asset), [])
        if not rows:
            continue
        first = min(rows, key=lambda r: r.created)
        since[item.pk] = first.created
        if not first.source_id and {r.reporting_category for r in rows} == {"fee"}:
            amount = -item.stripe_net
            if amount > 0:
                _offer(
                    item,
                    f"Stripe fee {format_money(item.asset, amount)} ({first.id}) is not booked: "
                    f"book it {STRIPE_FEES} -> {STRIPE_BALANCE} (the run books it automatically)",
                    _fee_repair(item, first, amount),
                    safe=True,
                )
            continue
        expanded = first.source_object if isinstance(first.source_object, dict) else None
        related[item.pk] = related_ids(item.key, expanded)
        wanted[item.pk] = EVENT_TYPES_BY_SOURCE.get(item.source_type, ALL_EVENT_TYPES)
        needs_event.append(item)

    found = _inbox_events(needs_event, related, wanted, since)
    at_stripe = [i for i in needs_event if i.pk not in found]
    if at_stripe:
        try:
            found.update(_stripe_events(at_stripe, related, wanted, since, gateway))
        except ApplicationError as exc:  # Stripe unreachable: keep the generic advice
            logger.warning("reconciliation: could not list Stripe events: %s", exc)
    for item in needs_event:
        _describe_missing(item, found.get(item.pk), wanted[item.pk], since[item.pk])
    Item.objects.bulk_update(items, _UPDATE_FIELDS)


def _inbox_events(
    items: list[ReconciliationItem],
    related: dict[int, set[str]],
    wanted: dict[int, tuple[str, ...]],
    since: dict[int, datetime],
) -> dict[int, _Candidate]:
    if not items:
        return {}
    by_object: dict[str, list[_Candidate]] = defaultdict(list)
    all_ids = sorted({i for item in items for i in related[item.pk]})
    types = sorted({t for item in items for t in wanted[item.pk]})
    earliest = min(since[item.pk] for item in items) - timedelta(days=1)
    for start in range(0, len(all_ids), 1000):
        rows = (
            StripeEvent.objects.filter(
                type__in=types,
                created__gte=earliest,
                payload__data__object__id__in=all_ids[start : start + 1000],
            )
            .annotate(object_id=KT("payload__data__object__id"))
            .values_list("stripe_id", "type", "object_id", "created", "status", "last_error")
        )
        for stripe_id, event_type, object_id, created, status, error in rows:
            by_object[object_id].append(
                _Candidate(stripe_id, event_type, object_id, created, status, error or "")
            )
    found: dict[int, _Candidate] = {}
    for item in items:
        candidates = [c for i in related[item.pk] for c in by_object.get(i, [])]
        chosen = _choose(candidates, wanted[item.pk])
        if chosen is not None:
            found[item.pk] = chosen
    return found


def _stripe_events(
    items: list[ReconciliationItem],
    related: dict[int, set[str]],
    wanted: dict[int, tuple[str, ...]],
    since: dict[int, datetime],
    gateway: StripeGateway | None,
) -> dict[int, _Candidate]:
    """Look the events up in Stripe's list (newest first), up to the scan limit."""
    gateway = gateway or get_gateway()
    types = sorted({t for item in items for t in wanted[item.pk]})
    owners: dict[str, list[ReconciliationItem]] = defaultdict(list)
    for item in items:
        for object_id in related[item.pk]:
            owners[object_id].append(item)
    earliest = min(since[item.pk] for item in items) - timedelta(hours=1)
    limit = int(conf.get("RECONCILIATION_EVENT_SCAN_LIMIT"))
    candidates: dict[int, list[_Candidate]] = defaultdict(list)
    events = gateway.events_iter(
        created_gte=int(earliest.timestamp()), types=types if len(types) <= 20 else None
    )
    for scanned, event in enumerate(events, 1):
        obj = (event.get("data") or {}).get("object") or {}
        found_id = str(obj.get("id") or "") if isinstance(obj, dict) else ""
        for owner in owners.get(found_id, []):
            candidates[owner.pk].append(
                _Candidate(str(event["id"]), str(event.get("type")), found_id)
            )
        if scanned >= limit:
            logger.warning("reconciliation: stopped after scanning %d Stripe events", scanned)
            break
    found: dict[int, _Candidate] = {}
    for item in items:
        chosen = _choose(candidates.get(item.pk, []), wanted[item.pk])
        if chosen is not None:
            found[item.pk] = chosen
    return found


def _describe_missing(
    item: ReconciliationItem, event: _Candidate | None, wanted: tuple[str, ...], since: datetime
) -> None:
    label = SOURCE_LABELS.get(item.source_type, "object")
    what = f"{label} {item.key} ({format_money(item.asset, item.stripe_net)} net)"
    if event is None:
        day = (since - timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
        _offer(
            item,
            f"{what} is not in the ledger and no webhook event for it was found (types "
            f"{', '.join(wanted[:3])}...): fetch missed events with `manage.py stripe_events "
            f"sync --since {day}`, or book it by hand",
            None,
            safe=False,
        )
        return
    repair = {"action": "replay_event", "event_id": event.stripe_id, "stripe_object": item.key}
    if event.type not in HANDLERS:
        _offer(
            item,
            f"{what} is not in the ledger: event {event.stripe_id} ({event.type}) describes it "
            "but no handler is registered for that type; book it by hand",
            repair,
            safe=False,
        )
    elif event.status is None:
        _offer(
            item,
            f"{label} webhook for {item.key} never reached us: replay event {event.stripe_id} "
            f"({event.type}, fetched from Stripe)",
            repair,
            safe=True,
        )
    elif event.status in _PENDING_STATUSES:
        error = f": {event.note[:200]}" if event.note else ""
        _offer(
            item,
            f"{label} webhook for {item.key} never processed: replay event {event.stripe_id} "
            f"({event.type}, {event.status}{error})",
            repair,
            safe=True,
        )
    else:
        note = f" ({event.note[:200]})" if event.note else ""
        _offer(
            item,
            f"{what} is not in the ledger although event {event.stripe_id} ({event.type}) was "
            f"{event.status}{note}: check its handler, then replay the event",
            repair,
            safe=False,
        )
