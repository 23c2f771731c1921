"""Posting from a Numscript script: the interpreter (ledger.numscript, pure Python) runs
against a store of balances and account metadata, and the postings it produces are stored like
any others, in one database transaction.

Two ways, with the same answers (the tests run both):

- **Read, then write with the reads checked** (the PostgreSQL fast path): one unlocked read of
  what the template's previous run asked for (`script_reads`), the interpreter, then one
  `ledger_post` call that locks every balance the interpreter read, in the global lock order,
  and writes only if each is exactly what it read; two round trips in autocommit, no BEGIN or
  COMMIT. A moved balance (a concurrent write) writes nothing and the script runs again:
- **Under locks, as it asks** (the portable path, dry runs, and the retry above): the
  interpreter reads balances through `LedgerStore`, locked as it asks for them and held until
  commit, then the postings are stored (unchecked: the interpreter has already applied the
  script's overdraft rules to the locked balances).

Colors: a Numscript colored balance (asset "USD/2", color "RED") is the ledger asset
"USD_RED/2" (base, "_", color, then the scale); the uncolored color "" is the plain asset. So a
ledger asset with an underscore in its base is a colored one; no uncolored Numscript asset
should use an underscore.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, NamedTuple

from django.db import IntegrityError, connection, transaction
from django.utils import timezone

from ledger import lock_objects, writer
from ledger.domain import (
    MAX_POSTINGS,
    BalanceKey,
    Plan,
    PostingInput,
    plan_postings,
    request_fingerprint,
    validate_address,
    validate_metadata,
    validate_postings,
    validate_reference,
    validate_timestamp,
)
from ledger.errors import (
    InsufficientFunds,
    InvalidTransaction,
    LedgerError,
    ScriptError,
)
from ledger.models import Account, Transaction
from ledger.numscript import (
    ExecutionResult,
    MissingFundsError,
    NumscriptError,
    Posting,
    Program,
    Unspeculable,
    parse,
    run,
)
from ledger.numscript.compiled import run_speculative
from ledger.retry import retry_on_conflict
from ledger.services.metadata import account_metadata_set
from ledger.services.script_reads import (
    ALL_SCALES,
    Drain,
    MetadataNotCached,
    NeedsLocks,
    SnapshotStore,
    SpeculativeStore,
    learn_reads,
    ledger_asset,
    remember_metadata,
    should_speculate,
    snapshot_read,
    speculation_done,
    speculation_impossible,
)
from ledger.services.sealing import seal_soon
from ledger.services.storing import (
    PostResult,
    replay,
    transaction_from,
    use_fast_path,
    volumes_in_range,
)

__all__ = ["LedgerStore", "ScriptOutcome", "ledger_asset", "script_error", "script_execute"]

ALWAYS_PASSES = -(2**63)  # the smallest bigint: a `required` no balance can be below


class LedgerStore:
    """The Numscript Store over the ledger's tables. Every balance it returns is read under the
    rows' locks (all shards, in the global order, one batch per call), held until commit."""

    def __init__(self) -> None:
        self.seconds = 0.0  # time spent in the database, for the benchmark's interpreter share
        self.locked: set[tuple[str, str]] = set()  # (address, ledger asset) read under lock

    def get_balances(
        self, query: Mapping[str, Collection[tuple[str, str]]]
    ) -> dict[str, dict[tuple[str, str], int]]:
        started = time.perf_counter()
        keys: dict[tuple[str, str], tuple[str, str, str]] = {}
        wildcards: list[tuple[str, str]] = []
        for account, wanted in query.items():
            validate_address(account)
            for asset, color in wanted:
                if asset.endswith(ALL_SCALES):
                    wildcards.append((account, asset[: -len(ALL_SCALES)]))
                else:
                    keys[(account, ledger_asset(asset, color))] = (account, asset, color)
        for account, base in wildcards:
            for asset in _assets_of_base(account, base):
                keys.setdefault((account, asset), (account, asset, ""))
        locked = lock_objects.balances_lock(keys=keys)
        self.locked.update(keys)
        answer: dict[str, dict[tuple[str, str], int]] = {account: {} for account in query}
        for key, (account, asset, color) in keys.items():
            answer[account][(asset, color)] = locked.get(key, 0)
        self.seconds += time.perf_counter() - started
        return answer

    def get_account_metadata(self, accounts: Collection[str]) -> dict[str, dict[str, str]]:
        started = time.perf_counter()
        rows = Account.objects.filter(address__in=list(accounts)).values_list("address", "metadata")
        result = {address: dict(meta) for address, meta in rows}
        for address, meta in result.items():
            remember_metadata(address, meta)  # the guess of the next speculative runs
        self.seconds += time.perf_counter() - started
        return result


def _assets_of_base(account: str, base: str) -> list[str]:
    """The uncolored ledger assets of `account` with this base: EUR, EUR/1, EUR/2, ..."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT DISTINCT b.asset FROM ledger_balance b JOIN ledger_account a "
            "ON a.id = b.account_id WHERE a.address = %s AND (b.asset = %s OR b.asset LIKE %s)",
            [account, base, base + "/%"],
        )
        return [row[0] for row in cursor.fetchall() if row[0].partition("/")[0] == base]


def script_error(
    exc: Exception, *, context: str = "", extra: Mapping[str, Any] | None = None
) -> LedgerError:
    """The ledger error for an interpreter error: InsufficientFunds for missing funds, else
    ScriptError (`context`, e.g. the flow's name, prefixes the message; `extra` is added)."""
    if isinstance(exc, MissingFundsError):
        return InsufficientFunds(
            account=exc.account or "(several sources)",
            asset=exc.asset,
            needed=exc.needed,
            available=exc.available,
            extra={"line": exc.line, "column": exc.column, **(extra or {})},
        )
    prefix = f"{context}: " if context else ""
    return ScriptError(
        f"{prefix}{type(exc).__name__}: {exc}",
        extra={
            "error": type(exc).__name__,
            "line": getattr(exc, "line", 0),
            "column": getattr(exc, "column", 0),
            **(extra or {}),
        },
    )


@dataclass(frozen=True, slots=True)
class ScriptOutcome:
    """A script's PostResult and the interpreter's result (None for a replay, which does not
    run the script again)."""

    post: PostResult
    execution: ExecutionResult | None


def script_post(
    *,
    script: str,
    vars: Mapping[str, str],
    reference: str | None,
    metadata: Mapping[str, Any] | None,
    timestamp: datetime | None,
    feature_flags: Collection[str],
    dry_run: bool,
    actor: str = "",
    timings: dict[str, float] | None = None,
) -> PostResult:
    """Run a Numscript script against the ledger and post its postings (see transaction_post)."""
    if not isinstance(script, str) or not script.strip():
        raise InvalidTransaction("The script is empty.")
    try:
        program = parse(script)  # cached per script text (ledger.numscript.parser.PARSE_CACHE)
    except NumscriptError as exc:
        raise script_error(exc) from None
    return script_execute(
        program=program,
        source=script,
        vars=vars,
        reference=reference,
        metadata=metadata,
        timestamp=timestamp,
        feature_flags=feature_flags,
        dry_run=dry_run,
        actor=actor,
        timings=timings,
    ).post


class _Run(NamedTuple):
    """One script request, validated: what every step below needs (a named tuple: built on
    every post, for less than a frozen dataclass costs)."""

    program: Program
    vars: Mapping[str, str]
    reference: str | None
    metadata: dict[str, Any]
    timestamp: datetime | None
    fingerprint: str | None
    feature_flags: Collection[str]
    actor: str
    timings: dict[str, float] | None
    raise_script_errors: bool


def script_execute(
    *,
    program: Program,
    source: str,
    vars: Mapping[str, str],
    reference: str | None = None,
    metadata: Mapping[str, Any] | None = None,
    timestamp: datetime | None = None,
    feature_flags: Collection[str] = (),
    dry_run: bool = False,
    actor: str = "",
    timings: dict[str, float] | None = None,
    raise_script_errors: bool = False,
) -> ScriptOutcome:
    """Run a parsed program and store its postings and metadata as one ledger transaction.

    On the PostgreSQL fast path (not a dry run): one unlocked read of what the script needs
    (the reference, account metadata and balances, as the template's previous run asked), the
    interpreter, then one `ledger_post` call that locks the balances the interpreter read, in
    the global order, and writes only if each is still exactly what was read; if one is not
    (a concurrent write), the script runs again under locks (`_run_locked`), as it does on the
    portable path and for dry runs. `raise_script_errors` lets the interpreter's NumscriptError
    through (for the CLI, which renders it against the source) instead of mapping it to a
    LedgerError."""
    run_ = _validated(
        program=program,
        source=source,
        vars=vars,
        reference=reference,
        metadata=metadata,
        timestamp=timestamp,
        feature_flags=feature_flags,
        actor=actor,
        timings=timings,
        raise_script_errors=raise_script_errors,
    )
    if dry_run or not use_fast_path():
        return _run_locked(run_, dry_run=dry_run)
    return _run_optimistic(run_)


def _validated(*, program: Program, source: str, vars: Mapping[str, str], **kw: Any) -> _Run:
    if not isinstance(vars, Mapping):
        raise InvalidTransaction("Script vars must map names to strings.")
    for name, value in vars.items():
        if not (isinstance(name, str) and isinstance(value, str)):
            raise InvalidTransaction("Script vars must map names to strings.")
    ref = validate_reference(kw.pop("reference"))
    meta = validate_metadata(kw.pop("metadata"))
    return _Run(
        program=program,
        vars=vars,
        reference=ref,
        metadata=meta,
        timestamp=validate_timestamp(kw.pop("timestamp")),
        fingerprint=(
            request_fingerprint(postings=None, metadata=meta, script=source, vars=vars)
            if ref is not None
            else None
        ),
        **kw,
    )


# --- the steps of a run --------------------------------------------------------------------


def _replay_existing(run_: _Run) -> ScriptOutcome | None:
    """The reference is already used: the original (a replay) or ReferenceConflict."""
    if run_.reference is None:
        return None
    existing = Transaction.objects.filter(reference=run_.reference).first()
    if existing is None:
        return None
    item = writer.PreparedTx(
        [], run_.reference, run_.metadata, run_.timestamp, {}, run_.fingerprint
    )
    written = writer.Written(
        1, existing.pk, existing.timestamp, existing.inserted_at, True, existing.idempotency_hash
    )
    return ScriptOutcome(post=replay(item, written), execution=None)


def _interpret(
    run_: _Run, store: LedgerStore | SnapshotStore, read_seconds: float = 0.0
) -> ExecutionResult:
    started = time.perf_counter()
    try:
        result = run(run_.program, vars=run_.vars, store=store, feature_flags=run_.feature_flags)
    except NumscriptError as exc:
        if run_.raise_script_errors:
            raise
        raise script_error(exc) from None
    if run_.timings is not None:
        run_.timings["interpreter"] = time.perf_counter() - started - store.seconds
        run_.timings["store"] = store.seconds + read_seconds  # the database's share
    return result


def _prepared(run_: _Run, result: ExecutionResult, drain: Drain | None = None) -> writer.PreparedTx:
    """The interpreter's postings and metadata as a transaction to store; a drain's postings
    (one per part) come last, with amount 0 until the write computes them."""
    postings = [
        PostingInput(p.source, p.destination, ledger_asset(p.asset, p.color), p.amount)
        for p in result.postings
        if p.amount > 0
    ]
    if drain is not None:
        address, asset = drain.key
        if postings:
            postings = validate_postings(postings)
        postings += [PostingInput(address, to, asset, 0) for _portion, to in drain.parts]
        if len(postings) > MAX_POSTINGS:
            raise InvalidTransaction(f"A transaction holds at most {MAX_POSTINGS} postings.")
    elif not postings:
        raise InvalidTransaction("The script produced no postings.")
    else:
        postings = validate_postings(postings)
    tx_meta = dict(run_.metadata)
    for key, value in result.tx_meta.items():
        if key in tx_meta and tx_meta[key] != value:
            raise ScriptError(
                f"Metadata {key!r} is set both by the request and by the script, "
                "with different values.",
                extra={"key": key},
            )
        tx_meta[key] = value
    return writer.PreparedTx(
        postings, run_.reference, tx_meta, run_.timestamp, {}, run_.fingerprint
    )


def _dry_run_outcome(run_: _Run, item: writer.PreparedTx, result: ExecutionResult) -> ScriptOutcome:
    now = timezone.now()
    tx = Transaction(
        id=None,
        reference=item.reference,
        timestamp=item.timestamp or now,
        inserted_at=now,  # else the field's db_default, which cannot be serialized
        metadata=item.metadata,
        idempotency_hash=None,
    )
    post = PostResult(
        transaction=tx,
        replayed=False,
        postings=tuple(item.postings),
        account_meta=result.account_meta,
        dry_run=True,
    )
    return ScriptOutcome(post=post, execution=result)


def _finish(
    run_: _Run, item: writer.PreparedTx, written: writer.Written, result: ExecutionResult
) -> ScriptOutcome:
    """After the write, in its database transaction: the script's account metadata."""
    if written.replayed:
        return ScriptOutcome(post=replay(item, written), execution=None)
    for address, values in sorted(result.account_meta.items()):
        account_metadata_set(
            address=address, metadata=values, actor=run_.actor, transaction_id=written.id
        )
    return ScriptOutcome(
        post=PostResult(
            transaction=transaction_from(item, written),
            replayed=False,
            postings=tuple(item.postings),
            account_meta=result.account_meta,
        ),
        execution=result,
    )


def _replaying_races(fn: Callable[[], ScriptOutcome], run_: _Run) -> ScriptOutcome:
    """A concurrent writer posted the same reference first (IntegrityError): replay it."""
    try:
        return fn()
    except IntegrityError:
        replayed = _replay_existing(run_)
        if replayed is None:
            raise
        return replayed


# --- under locks (portable path, dry runs, and a stale optimistic read) ----------------------


def _run_locked(run_: _Run, *, dry_run: bool = False) -> ScriptOutcome:
    """The interpreter reads balances through LedgerStore, locked as it asks (held until
    commit), then its postings are stored (unchecked: the interpreter already applied the
    script's overdraft rules to the locked balances)."""
    replayed = _replay_existing(run_)
    if replayed is not None:
        return replayed
    return _replaying_races(lambda: _attempt_locked(run_, dry_run=dry_run), run_)


@retry_on_conflict
def _attempt_locked(run_: _Run, *, dry_run: bool) -> ScriptOutcome:
    with transaction.atomic(durable=not connection.in_atomic_block):
        store = LedgerStore()
        result = _interpret(run_, store)
        item = _prepared(run_, result)
        if dry_run:
            transaction.set_rollback(True)
            return _dry_run_outcome(run_, item, result)
        plan = plan_postings([(item.postings, {})], check=False)
        for key in plan.keys:
            if (key.address, key.asset) in store.locked:
                # The interpreter checked these funds against the locked rows: the change
                # must land in those rows (a "checked" key, whose check always passes),
                # not in a new shard row that a concurrent locker's snapshot cannot see.
                key.required = ALWAYS_PASSES
        with volumes_in_range():
            if use_fast_path():
                written = writer.write_postgres([item], plan)[0]
            else:
                written = writer.write_portable([item], plan)[0]
        outcome = _finish(run_, item, written, result)
    if not outcome.post.replayed:
        seal_soon()
    return outcome


# --- optimistic (PostgreSQL fast path) -------------------------------------------------------


def _run_optimistic(run_: _Run) -> ScriptOutcome:
    if should_speculate(run_.program):
        outcome = _run_speculative(run_)
        if outcome is not None:
            return outcome
    started = time.perf_counter()
    snapshot = snapshot_read(run_.program, run_.vars, run_.reference)
    if snapshot.existing_id is not None:
        replayed = _replay_existing(run_)
        if replayed is not None:
            return replayed
    store = SnapshotStore(snapshot)
    try:
        result = _interpret(run_, store, read_seconds=time.perf_counter() - started)
    except NeedsLocks:
        return _run_locked(run_)
    finally:
        learn_reads(run_.program, run_.vars, store)
    item = _prepared(run_, result)
    plan = _plan_with(item, store.read, exact=True)
    try:
        return _replaying_races(lambda: _write_checked(run_, item, plan, result), run_)
    except writer.StaleRead:
        return _run_locked(run_)


def _run_speculative(run_: _Run) -> ScriptOutcome | None:
    """No read at all: the interpreter runs against a SpeculativeStore (every balance 0, a
    bounded source taking in full and reporting the stored balance that needs), and one
    `ledger_post` call checks each of those minimums under the rows' locks, in the global
    order, before it writes (`required`, LD001), and answers a used reference with the stored
    transaction (a replay or a conflict, as for any post). None: the ordinary way must answer
    (the run needed an exact balance or metadata, it raised, or a minimum did not hold: the
    real balance may give other postings, or the real error)."""
    store = SpeculativeStore()
    started = time.perf_counter()
    try:
        # a template of the common shapes runs as the function generated for it (the
        # interpreter's answer, without the tree walk: ledger.numscript.compiled)
        result = run_speculative(
            run_.program, vars=run_.vars, store=store, feature_flags=run_.feature_flags
        )
        if run_.timings is not None:
            run_.timings["interpreter"] = time.perf_counter() - started
            run_.timings["store"] = 0.0  # nothing read
        item = _prepared(run_, result, store.drained)
    except MetadataNotCached:
        return None  # the ordinary run reads it, and remembers it for the next runs
    except Unspeculable:
        speculation_impossible(run_.program)
        return None
    except (NumscriptError, LedgerError):
        return None  # the ordinary run gives the error (or the replay of a used reference)
    plan = _plan_with(item, store.required, exact=False)
    checks = None
    if store.drained is not None or store.metadata_used:
        checks = _script_checks(plan, store)
        if checks is None:  # the drained account is not first in the lock order
            speculation_impossible(run_.program)
            return None
    try:
        outcome = _replaying_races(lambda: _write_checked(run_, item, plan, result, checks), run_)
    except (InsufficientFunds, writer.StaleRead, writer.SpeculationRefused):
        speculation_done(run_.program, hit=False)
        return None
    speculation_done(run_.program, hit=True)
    return outcome


def _script_checks(plan: Plan, store: SpeculativeStore) -> writer.ScriptChecks | None:
    """What the write must check or compute for a speculative run beyond its minimums: the
    metadata it used and its drain. None: the drain cannot be written (its account must be the
    first key in the lock order, since the write locks it before anything else)."""
    drain = store.drained
    if drain is None:
        return writer.ScriptChecks(metadata=store.metadata_used)
    index = {(key.address, key.asset): i for i, key in enumerate(plan.keys)}
    if index[drain.key] != 0:
        return None
    _address, asset = drain.key
    return writer.ScriptChecks(
        metadata=store.metadata_used,
        drain_held=drain.held,
        drain_parts=tuple(
            (portion.numerator, portion.denominator, index[(to, asset)])
            for portion, to in drain.parts
        ),
    )


def _plan_with(
    item: writer.PreparedTx, balances: Mapping[tuple[str, str], int], *, exact: bool
) -> Plan:
    """The postings' plan, unchecked (the interpreter applied the script's overdraft rules),
    plus a check of each of `balances` under the write's locks: exactly the balance the
    interpreter read (`exact`, SQLSTATE LD003 otherwise) or at least the minimum a speculative
    run reported (LD001). A key only read or taken from, with no posting, changes nothing but is
    locked and checked all the same, since the postings depend on it."""
    plan = plan_postings([(item.postings, {})], check=False)
    by_key = {(key.address, key.asset): key for key in plan.keys}
    extra = False
    for (address, asset), balance in balances.items():
        key = by_key.get((address, asset))
        if key is None:
            key = by_key[(address, asset)] = BalanceKey(address, asset)
            extra = True
        key.required = balance
        if exact:
            key.expect = balance
    if extra:
        addresses = sorted({address for address, _asset in by_key})
        plan = Plan(
            addresses=addresses,
            keys=[by_key[k] for k in sorted(by_key)],
            address_index={a: i for i, a in enumerate(addresses)},
        )
    return plan


@retry_on_conflict
def _write_checked(
    run_: _Run,
    item: writer.PreparedTx,
    plan: Plan,
    result: ExecutionResult,
    checks: writer.ScriptChecks | None = None,
) -> ScriptOutcome:
    """One `ledger_post` call (with `checks`, the script's own) when the script sets no
    account metadata: in autocommit when this is the outermost service (the statement is the
    transaction), guarded inside a caller's transaction (a failure rolls back only the call);
    else in a (nested) atomic block with the metadata writes after it."""
    with volumes_in_range():
        if not result.account_meta:
            # inside a caller's transaction, a failure rolls back only this call (guarded)
            outcome = _finish(
                run_, *_write(item, plan, result, checks, guarded=connection.in_atomic_block)
            )
        else:
            with transaction.atomic(durable=not connection.in_atomic_block):
                outcome = _finish(run_, *_write(item, plan, result, checks, guarded=False))
    if not outcome.post.replayed:
        seal_soon()
    return outcome


def _write(
    item: writer.PreparedTx,
    plan: Plan,
    result: ExecutionResult,
    checks: writer.ScriptChecks | None,
    *,
    guarded: bool,
) -> tuple[writer.PreparedTx, writer.Written, ExecutionResult]:
    """The write, and the transaction and run as written: a drain's parts in place of its
    postings' zero amounts."""
    if checks is None:
        return item, writer.write_postgres([item], plan, guarded=guarded)[0], result
    written, parts = writer.write_script(item, plan, checks, guarded=guarded)
    if not parts:
        return item, written, result
    first = len(item.postings) - len(parts)
    postings = item.postings[:first]
    run_postings = list(result.postings)
    for p, amount in zip(item.postings[first:], parts, strict=True):
        postings.append(PostingInput(p.source, p.destination, p.asset, amount))
        run_postings.append(Posting(p.source, p.destination, p.asset, amount))
    done = ExecutionResult(run_postings, result.tx_meta, result.account_meta)
    stored = writer.PreparedTx(
        postings,
        item.reference,
        item.metadata,
        item.timestamp,
        item.overdraft,
        item.fingerprint,
        item.reverts,
    )
    return stored, written, done
