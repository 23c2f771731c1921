"""Writing transactions: post (postings or a Numscript script), bulk post, revert."""

from __future__ import annotations

import logging
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.db import (
    IntegrityError,
    connection,
    transaction,
)

from ledger import writer
from ledger.domain import (
    MAX_AMOUNT,
    PostingInput,
    TxInput,
    plan_postings,
    request_fingerprint,
    validate_metadata,
    validate_overdraft,
    validate_postings,
    validate_reference,
    validate_timestamp,
)
from ledger.errors import (
    AlreadyReverted,
    InsufficientFunds,
    InvalidTransaction,
    LedgerError,
    ReferenceConflict,
    TransactionNotFound,
)
from ledger.models import Transaction
from ledger.retry import retry_on_conflict
from ledger.services.scripts import script_post
from ledger.services.sealing import seal_soon
from ledger.services.storing import (
    PostResult,
    replay,
    transaction_from,
    transaction_postings,
    use_fast_path,
    volumes_in_range,
)

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class BulkItemResult:
    index: int
    result: PostResult | None = None
    error: LedgerError | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


# --- preparing -----------------------------------------------------------------------------


def prepare_tx(
    *,
    postings: Any,
    reference: Any = None,
    metadata: Any = None,
    timestamp: Any = None,
    overdraft: Any = None,
    reverts: int | None = None,
) -> writer.PreparedTx:
    """Validate one transaction (raises a LedgerError) and fingerprint it."""
    items = validate_postings(postings)
    ref = validate_reference(reference)
    meta = validate_metadata(metadata)
    return writer.PreparedTx(
        postings=items,
        reference=ref,
        metadata=meta,
        timestamp=validate_timestamp(timestamp),
        overdraft=validate_overdraft(overdraft),
        fingerprint=(
            request_fingerprint(postings=items, metadata=meta, reverts=reverts)
            if ref is not None
            else None
        ),
        reverts=reverts,
    )


def _is_constraint(exc: IntegrityError, name: str) -> bool:
    if isinstance(exc, writer.UniqueViolation):  # a guarded write's, see write_postgres
        return exc.constraint_name == name
    cause = exc.__cause__
    diag = getattr(cause, "diag", None)
    if diag is not None and getattr(diag, "constraint_name", None):
        return diag.constraint_name == name
    # SQLite names the columns instead of the constraint
    column = {
        "ledger_transaction_reference_uniq": "reference",
        "ledger_transaction_reverts_uniq": "reverts_id",
    }[name]
    return f"ledger_transaction.{column}" in str(exc)


def _write(items: Sequence[writer.PreparedTx], *, check: bool = True) -> list[writer.Written]:
    """Plan and store. On PostgreSQL outside any atomic block this is a single statement in
    autocommit mode, which PostgreSQL runs atomically (the outermost service's transaction is
    that statement); otherwise the portable path or the function runs in a (durable, or nested
    savepoint) atomic block; inside a caller's transaction on PostgreSQL, the guarded function
    (its own subtransaction, no savepoint round trips)."""
    plan = plan_postings([(item.postings, item.overdraft) for item in items], check=check)
    with volumes_in_range():
        if use_fast_path():
            # inside a caller's transaction, a failure rolls back only this call (guarded)
            return writer.write_postgres(items, plan, guarded=connection.in_atomic_block)
        with transaction.atomic(durable=not connection.in_atomic_block):
            return writer.write_portable(items, plan)


@retry_on_conflict
def _post_prepared(item: writer.PreparedTx, *, check: bool = True) -> PostResult:
    try:
        written = _write([item], check=check)[0]
    except IntegrityError as exc:
        if item.reference is not None and _is_constraint(exc, "ledger_transaction_reference_uniq"):
            # A concurrent writer posted the same reference first and committed: replay it.
            existing = Transaction.objects.filter(reference=item.reference).first()
            if existing is None:
                raise
            return replay(
                item,
                writer.Written(
                    1,
                    existing.pk,
                    existing.timestamp,
                    existing.inserted_at,
                    True,
                    existing.idempotency_hash,
                ),
            )
        if item.reverts is not None and _is_constraint(exc, "ledger_transaction_reverts_uniq"):
            raise AlreadyReverted(
                f"Transaction {item.reverts} is already reverted.",
                extra={"transaction_id": item.reverts},
            ) from None
        raise
    if written.replayed:
        return replay(item, written)
    seal_soon()
    return PostResult(
        transaction=transaction_from(item, written), replayed=False, postings=tuple(item.postings)
    )


class _DryRunRollback(Exception):
    pass


def _dry_run(item: writer.PreparedTx, *, check: bool = True) -> PostResult:
    """Run the whole write (funds checks under locks included) and roll it back."""
    outcome: list[PostResult] = []
    try:
        with transaction.atomic(durable=not connection.in_atomic_block):
            result = _post_prepared(item, check=check)
            outcome.append(result)
            if not result.replayed:
                raise _DryRunRollback
    except _DryRunRollback:
        result = outcome[0]
        tx = result.transaction
        tx.id = None
        return PostResult(transaction=tx, replayed=False, postings=result.postings, dry_run=True)
    return outcome[0]


# --- public services -----------------------------------------------------------------------


def transaction_post(
    *,
    postings: Sequence[PostingInput | Mapping[str, Any]] | None = None,
    script: str | None = None,
    vars: Mapping[str, str] | None = None,
    reference: str | None = None,
    metadata: Mapping[str, Any] | None = None,
    timestamp: datetime | None = None,
    overdraft: Mapping[str, int | None] | None = None,
    feature_flags: Collection[str] = (),
    dry_run: bool = False,
) -> PostResult:
    """Post one transaction, from `postings` or a Numscript `script` (with `vars`).

    `reference` makes it idempotent: the same reference with the same content returns the
    original (`replayed=True`); with different content it raises ReferenceConflict.
    `timestamp` (default now) may be in the past. `overdraft` maps a source address to the
    overdraft it may reach (an int >= 0, or None for unbounded); `world` is always unbounded.
    `dry_run` runs every check, under the same locks, and writes nothing.

    Raises InvalidAddress, InvalidAsset, InvalidAmount, InvalidMetadata, InvalidTransaction,
    InsufficientFunds, ReferenceConflict, ScriptError, LedgerBusy."""
    if script is not None:
        if postings is not None:
            raise InvalidTransaction("Give either postings or a script, not both.")
        return script_post(
            script=script,
            vars=vars or {},
            reference=reference,
            metadata=metadata,
            timestamp=timestamp,
            feature_flags=feature_flags,
            dry_run=dry_run,
        )
    if postings is None:
        raise InvalidTransaction("A transaction needs postings or a script.")
    item = prepare_tx(
        postings=postings,
        reference=reference,
        metadata=metadata,
        timestamp=timestamp,
        overdraft=overdraft,
    )
    if dry_run:
        return _dry_run(item)
    return _post_prepared(item)


def transactions_post_bulk(
    *, items: Sequence[TxInput | Mapping[str, Any]], atomic: bool = True
) -> list[BulkItemResult]:
    """Post many transactions in one call.

    atomic=True: all or nothing, in one database statement on PostgreSQL; transactions are
    checked in order, as if posted one after the other; any invalid item, conflicting
    reference or insufficient funds raises (the error's `extra` names the item `index` where it
    can). A reference already posted with the same content is a replay, not an error.

    atomic=False: each item succeeds or fails on its own; the result list says which. The batch
    is tried as one statement first and falls back to one transaction per item on a failure."""
    results: list[BulkItemResult | None] = [None] * len(items)
    pending: list[tuple[int, writer.PreparedTx]] = []
    for index, raw in enumerate(items):
        try:
            pending.append((index, _prepare_bulk_item(raw)))
        except LedgerError as exc:
            if atomic:
                exc.extra.setdefault("index", index)
                raise
            results[index] = BulkItemResult(index=index, error=exc)

    # The same reference twice in one batch: the second is a replay of the first, or a conflict.
    first_by_ref: dict[str, tuple[int, writer.PreparedTx]] = {}
    duplicates: list[tuple[int, int]] = []
    unique: list[tuple[int, writer.PreparedTx]] = []
    for index, item in pending:
        if item.reference is not None and item.reference in first_by_ref:
            first_index, first = first_by_ref[item.reference]
            if first.fingerprint != item.fingerprint or (
                item.timestamp is not None and item.timestamp != first.timestamp
            ):
                conflict = ReferenceConflict(
                    f"Reference {item.reference!r} appears twice in the batch with different "
                    "content.",
                    extra={"reference": item.reference, "index": index},
                )
                if atomic:
                    raise conflict
                results[index] = BulkItemResult(index=index, error=conflict)
                continue
            duplicates.append((index, first_index))
            continue
        if item.reference is not None:
            first_by_ref[item.reference] = (index, item)
        unique.append((index, item))

    if atomic:
        for index, result in _bulk_atomic(unique):
            results[index] = BulkItemResult(index=index, result=result)
    else:
        for chunk_start in range(0, len(unique), 1000):
            for index, outcome in _bulk_independent(unique[chunk_start : chunk_start + 1000]):
                results[index] = outcome

    for index, first_index in duplicates:
        first_outcome = results[first_index]
        assert first_outcome is not None
        if first_outcome.result is None:
            results[index] = BulkItemResult(index=index, error=first_outcome.error)
        else:
            original = first_outcome.result
            results[index] = BulkItemResult(
                index=index,
                result=PostResult(
                    transaction=original.transaction, replayed=True, postings=original.postings
                ),
            )
    return [r for r in results if r is not None]


def _prepare_bulk_item(raw: TxInput | Mapping[str, Any]) -> writer.PreparedTx:
    if isinstance(raw, TxInput):
        return prepare_tx(
            postings=raw.postings,
            reference=raw.reference,
            metadata=raw.metadata,
            timestamp=raw.timestamp,
            overdraft=raw.overdraft,
        )
    if not isinstance(raw, Mapping):
        raise InvalidTransaction("Each bulk item must be an object with postings.")
    unknown = set(raw) - {"postings", "reference", "metadata", "timestamp", "overdraft"}
    if unknown:
        raise InvalidTransaction(f"Unknown field(s) in bulk item: {', '.join(sorted(unknown))}.")
    return prepare_tx(
        postings=raw.get("postings"),
        reference=raw.get("reference"),
        metadata=raw.get("metadata"),
        timestamp=raw.get("timestamp"),
        overdraft=raw.get("overdraft"),
    )


@retry_on_conflict
def _bulk_atomic(
    entries: Sequence[tuple[int, writer.PreparedTx]],
) -> list[tuple[int, PostResult]]:
    done: list[tuple[int, PostResult]] = []
    todo = list(entries)
    while todo:
        try:
            written = _write([item for _i, item in todo])
        except IntegrityError as exc:
            if _is_constraint(exc, "ledger_transaction_reference_uniq"):
                continue  # a concurrent writer took a reference: the next round replays it
            raise
        if written and written[0].replayed:
            replayed_ordinals = set()
            for w in written:
                index, item = todo[w.ordinal - 1]
                try:
                    done.append((index, replay(item, w)))
                except ReferenceConflict as exc:
                    exc.extra["index"] = index
                    raise
                replayed_ordinals.add(w.ordinal)
            todo = [e for ordinal, e in enumerate(todo, 1) if ordinal not in replayed_ordinals]
            continue
        for (index, item), w in zip(todo, written, strict=True):
            done.append(
                (
                    index,
                    PostResult(
                        transaction=transaction_from(item, w),
                        replayed=False,
                        postings=tuple(item.postings),
                    ),
                )
            )
        seal_soon()
        break
    return done


def _bulk_independent(
    entries: Sequence[tuple[int, writer.PreparedTx]],
) -> list[tuple[int, BulkItemResult]]:
    if not entries:
        return []
    if not connection.in_atomic_block:
        try:
            return [
                (index, BulkItemResult(index=index, result=result))
                for index, result in _bulk_atomic(entries)
            ]
        except LedgerError:
            pass  # fall back to one transaction per item
    outcomes = []
    for index, item in entries:
        try:
            outcomes.append((index, BulkItemResult(index=index, result=_post_prepared(item))))
        except LedgerError as exc:
            outcomes.append((index, BulkItemResult(index=index, error=exc)))
    return outcomes


def transaction_revert(
    *,
    transaction_id: int,
    force: bool = False,
    reference: str | None = None,
    metadata: Mapping[str, Any] | None = None,
    overdraft: Mapping[str, int | None] | None = None,
    at_original_timestamp: bool = False,
    dry_run: bool = False,
) -> PostResult:
    """Post the inverse of a transaction: its postings in reverse order, source and destination
    swapped, referencing the original. A transaction is reverted at most once (a database
    constraint). The revert is checked for funds like any posting (`overdraft` allows some
    sources to overdraw) unless `force`, which lets every source overdraw.

    `dry_run` takes this same path (same inverse, checks and locks) and rolls the write back:
    its `postings` are exactly what the revert would write, and it raises what it would raise.

    Raises TransactionNotFound, AlreadyReverted, InsufficientFunds, ReferenceConflict."""
    original = (
        Transaction.objects.filter(pk=transaction_id).first()
        if isinstance(transaction_id, int) and 0 < transaction_id <= MAX_AMOUNT
        else None
    )
    if original is None:
        raise TransactionNotFound(
            f"Transaction {transaction_id} does not exist.",
            extra={"transaction_id": transaction_id},
        )
    inverse = [
        PostingInput(p.destination, p.source, p.asset, p.amount)
        for p in reversed(transaction_postings(original.pk))
    ]
    item = prepare_tx(
        postings=inverse,
        reference=reference,
        metadata=metadata,
        timestamp=original.timestamp if at_original_timestamp else None,
        overdraft=overdraft,
        reverts=original.pk,
    )
    # A replay of this revert (same reference) must answer as a replay, not AlreadyReverted.
    replay = (
        item.reference is not None and Transaction.objects.filter(reference=item.reference).exists()
    )
    if not replay and Transaction.objects.filter(reverts_id=original.pk).exists():
        raise AlreadyReverted(
            f"Transaction {original.pk} is already reverted.",
            extra={"transaction_id": original.pk},
        )
    try:
        if dry_run:
            return _dry_run(item, check=not force)
        return _post_prepared(item, check=not force)
    except InsufficientFunds:
        # A concurrent revert of the same transaction committed first (its balance changes
        # are what we waited for): that is the answer, not the funds.
        if Transaction.objects.filter(reverts_id=original.pk).exists():
            raise AlreadyReverted(
                f"Transaction {original.pk} is already reverted.",
                extra={"transaction_id": original.pk},
            ) from None
        raise
