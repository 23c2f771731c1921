"""The hash chain: sealing committed transactions, in order, after commit.

Why after commit: hashing inside the posting transaction would need the previous hash, i.e. a
lock on the chain's head held until commit (fsync) by every writer, the one global bottleneck
Formance warns about. Instead each posting inserts a row in `ledger_unsealed` (same database
transaction, so only committed transactions are ever queued), and a single sealer (a
PostgreSQL advisory lock makes it single) appends them to `ledger_seal` in transaction-id
order, batch after batch. The chain's order is the seal order: a transaction that commits
late (a lower id committed after a higher one) is sealed in a later batch, never skipped.

Triggers: `seal_soon()` schedules the Celery task on commit, at most once per
LEDGER_SEAL_DEBOUNCE seconds per process; Celery beat also runs it every few seconds
(registered in LedgerConfig.ready) and `manage.py ledger seal` runs it by hand.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.db import connection, transaction
from django.utils import timezone

from config.celery import task_send
from ledger import conf
from ledger.domain import GENESIS_HASH, chain_hash, transaction_canonical
from ledger.models import Seal, Transaction, Unsealed

logger = logging.getLogger(__name__)

SEALER_LOCK_KEY = 0x4C45444745525345  # "LEDGERSE": pg_advisory_xact_lock key of the sealer

_last_scheduled = 0.0
_schedule_lock = threading.Lock()


def seal_soon() -> None:
    """Ask for a seal after the current transaction commits, debounced per process."""
    global _last_scheduled
    now = time.monotonic()
    debounce = conf.get("LEDGER_SEAL_DEBOUNCE")
    if now - _last_scheduled < debounce or not conf.get("LEDGER_SEAL_ON_COMMIT"):
        return
    with _schedule_lock:
        if now - _last_scheduled < debounce:
            return
        _last_scheduled = now
    transaction.on_commit(_enqueue_seal)


def _enqueue_seal() -> None:
    try:
        task_send("ledger.seal", countdown=conf.get("LEDGER_SEAL_DEBOUNCE"), retry=False)
    except Exception:  # the broker is down: beat (or the next post) will seal
        logger.warning("ledger: could not schedule the sealer", exc_info=True)


def _load_chain_rows(ids: list[int]) -> dict[int, bytes]:
    """Canonical encodings of these transactions, read back from the database."""
    txs = {
        tx.pk: tx
        for tx in Transaction.objects.filter(pk__in=ids).only(
            "id", "reference", "timestamp", "inserted_at", "metadata", "reverts_id"
        )
    }
    postings: dict[int, list[tuple[str, str, str, int]]] = {tx_id: [] for tx_id in txs}
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT p.transaction_id, s.address, d.address, p.asset, p.amount "
            "FROM ledger_posting p JOIN ledger_account s ON s.id = p.source_id "
            "JOIN ledger_account d ON d.id = p.destination_id "
            f"WHERE p.transaction_id IN ({', '.join(['%s'] * len(ids))}) "
            'ORDER BY p.transaction_id, p."index"',
            ids,
        )
        for tx_id, source, destination, asset, amount in cursor.fetchall():
            postings[tx_id].append((source, destination, asset, amount))
    return {
        tx_id: transaction_canonical(
            id=tx.pk,
            reference=tx.reference,
            timestamp=tx.timestamp,
            inserted_at=tx.inserted_at,
            metadata=tx.metadata,
            postings=postings[tx_id],
            reverts=tx.reverts_id,
        )
        for tx_id, tx in txs.items()
    }


@dataclass(frozen=True, slots=True)
class SealLink:
    """One transaction's link of the hash chain, as `seal_link_verify` found it."""

    state: str  # "sealed" (verified), "pending" (the sealer has not reached it), "broken"
    seq: int | None = None
    hash: str = ""
    detail: str = ""


def seal_link_verify(*, transaction_id: int) -> SealLink:
    """Re-verify one transaction's link (reads only): its hash recomputed from the rows as
    they are now, with the sealer's own canonical form, and its `prev_hash` compared with
    the previous link's hash. `chain_verify` does this for the whole chain."""
    seal = Seal.objects.filter(transaction_id=transaction_id).first()
    if seal is None:
        return SealLink("pending", detail="Not sealed yet (the sealer runs after commits).")
    canonical = _load_chain_rows([transaction_id]).get(transaction_id)
    if canonical is None or chain_hash(seal.prev_hash, canonical) != seal.hash:
        return SealLink(
            "broken", seal.seq, seal.hash, "The stored transaction no longer hashes to its seal."
        )
    if seal.seq > 1:
        prev = Seal.objects.filter(seq=seal.seq - 1).values_list("hash", flat=True).first()
        if prev != seal.prev_hash:
            return SealLink(
                "broken", seal.seq, seal.hash, "The previous link's hash does not match."
            )
    elif seal.prev_hash != GENESIS_HASH:
        return SealLink("broken", seal.seq, seal.hash, "The first link does not start the chain.")
    return SealLink("sealed", seal.seq, seal.hash, "Hash verified against the previous link.")


def _seal_batch(limit: int) -> int | None:
    with transaction.atomic(durable=not connection.in_atomic_block):
        if connection.vendor == "postgresql":
            with connection.cursor() as cursor:
                cursor.execute("SELECT pg_try_advisory_xact_lock(%s)", [SEALER_LOCK_KEY])
                if not cursor.fetchone()[0]:
                    return None  # another sealer is running
        ids = list(
            Unsealed.objects.order_by("transaction_id").values_list("transaction_id", flat=True)[
                :limit
            ]
        )
        if not ids:
            return 0
        head = Seal.objects.order_by("-seq").values_list("seq", "hash").first()
        seq, prev = head if head is not None else (0, GENESIS_HASH)
        canonical = _load_chain_rows(ids)
        seals = []
        for tx_id in ids:
            seq += 1
            digest = chain_hash(prev, canonical[tx_id])
            seals.append(Seal(seq=seq, transaction_id=tx_id, prev_hash=prev, hash=digest))
            prev = digest
        Seal.objects.bulk_create(seals, batch_size=1000)
        Unsealed.objects.filter(transaction_id__in=ids).delete()
        return len(ids)


def transactions_seal(*, batch_size: int = 5000, max_batches: int | None = None) -> int:
    """Append every committed, unsealed transaction to the hash chain; return how many were
    sealed (0 if another sealer holds the lock)."""
    total = 0
    batches = 0
    while max_batches is None or batches < max_batches:
        sealed = _seal_batch(batch_size)
        batches += 1
        if not sealed:
            break
        total += sealed
        if sealed < batch_size:
            break
    return total


@dataclass(frozen=True, slots=True)
class BrokenLink:
    seq: int
    transaction_id: int | None
    reason: str


@dataclass(slots=True)
class ChainReport:
    checked: int = 0
    head_hash: str = GENESIS_HASH
    broken: BrokenLink | None = None
    unsealed_total: int = 0
    unsealed_stale: list[int] = field(default_factory=list)  # older than the threshold
    unqueued: list[int] = field(default_factory=list)  # neither sealed nor queued: tampering
    balance_mismatches: list[tuple[str, str, int, int]] = field(default_factory=list)
    asset_sums: dict[str, int] = field(default_factory=dict)  # non-zero sums only

    @property
    def ok(self) -> bool:
        return (
            self.broken is None
            and not self.unsealed_stale
            and not self.unqueued
            and not self.balance_mismatches
            and not self.asset_sums
        )


def _seals(chunk: int = 2000) -> Iterator[tuple[int, int, str, str]]:
    last = 0
    while True:
        rows = list(
            Seal.objects.filter(seq__gt=last)
            .order_by("seq")
            .values_list("seq", "transaction_id", "prev_hash", "hash")[:chunk]
        )
        if not rows:
            return
        yield from rows
        last = rows[-1][0]


def chain_verify(
    *, unsealed_after: timedelta = timedelta(minutes=5), balances: bool = True
) -> ChainReport:
    """Recompute the whole chain from the rows as they are now and stop at the first broken
    link; seals nothing. Also report transactions unsealed for longer than `unsealed_after`,
    transactions neither sealed nor queued, and (with `balances`) balance rows that differ
    from the sum of their postings and assets whose balances do not sum to zero."""
    report = ChainReport()
    prev = GENESIS_HASH
    expected_seq = 1
    batch: list[tuple[int, int, str, str]] = []

    def check(rows: list[tuple[int, int, str, str]]) -> bool:
        nonlocal prev, expected_seq
        canonical = _load_chain_rows([tx_id for _seq, tx_id, _p, _h in rows])
        for seq, tx_id, prev_hash, stored in rows:
            reason = None
            if seq != expected_seq:
                reason = f"seal {expected_seq} is missing (next is {seq})"
            elif prev_hash != prev:
                reason = "prev_hash does not match the previous seal's hash"
            elif tx_id not in canonical:
                reason = f"transaction {tx_id} is missing"
            elif chain_hash(prev, canonical[tx_id]) != stored:
                reason = "hash does not match the transaction's content"
            if reason is not None:
                report.broken = BrokenLink(seq=seq, transaction_id=tx_id, reason=reason)
                return False
            prev = stored
            expected_seq += 1
            report.checked += 1
        return True

    for row in _seals():
        batch.append(row)
        if len(batch) >= 1000:
            if not check(batch):
                break
            batch = []
    else:
        if batch:
            check(batch)
    report.head_hash = prev

    cutoff: datetime = timezone.now() - unsealed_after
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM ledger_unsealed")
        report.unsealed_total = cursor.fetchone()[0]
        cursor.execute(
            "SELECT t.id FROM ledger_transaction t JOIN ledger_unsealed u "
            "ON u.transaction_id = t.id WHERE t.inserted_at < %s ORDER BY t.id LIMIT 100",
            [cutoff],
        )
        report.unsealed_stale = [row[0] for row in cursor.fetchall()]
        cursor.execute(
            "SELECT t.id FROM ledger_transaction t WHERE NOT EXISTS "
            "(SELECT 1 FROM ledger_seal s WHERE s.transaction_id = t.id) AND NOT EXISTS "
            "(SELECT 1 FROM ledger_unsealed u WHERE u.transaction_id = t.id) "
            "ORDER BY t.id LIMIT 100"
        )
        report.unqueued = [row[0] for row in cursor.fetchall()]
    if balances:
        from ledger.selectors import ledger_invariants_check

        invariants = ledger_invariants_check()
        report.balance_mismatches = invariants.balance_mismatches
        report.asset_sums = invariants.asset_sums
    return report
