"""Posting from a Numscript script: the interpreter (ledger.numscript, pure Python) runs inside
the database transaction against `LedgerStore`, which answers with balances read under row
locks, then the resulting postings are stored like any others (unchecked: the interpreter has
already applied the script's own overdraft rules to the locked balances).

Colors: a Numscript colored balance (asset "USD/2", color "RED") is the ledger asset
"USD_RED/2" (base, "_", color, then the scale); the uncolored color "" is the plain asset. So a
ledger asset with an underscore in its base is a colored one; no uncolored Numscript asset
should use an underscore.
"""

from __future__ import annotations

import time
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.db import DataError, IntegrityError, connection, transaction
from django.utils import timezone

from ledger import conf, lock_objects, writer
from ledger.domain import (
    MAX_AMOUNT,
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
    InvalidAmount,
    InvalidTransaction,
    LedgerError,
    ScriptError,
)
from ledger.models import Account, Transaction
from ledger.numscript import (
    ExecutionResult,
    MissingFundsError,
    NumscriptError,
    Program,
    parse,
    run,
)
from ledger.retry import retry_on_conflict
from ledger.services.metadata import account_metadata_set
from ledger.services.sealing import seal_soon
from ledger.services.storing import PostResult, replay, transaction_from, writer_shard

ALL_SCALES = "/*"
ALWAYS_PASSES = -(2**63)  # the smallest bigint: a `required` no balance can be below


def ledger_asset(asset: str, color: str) -> str:
    """Numscript (asset, color) -> ledger asset: ("USD/2", "RED") -> "USD_RED/2"."""
    if not color:
        return asset
    base, slash, scale = asset.partition("/")
    return f"{base}_{color}{slash}{scale}"


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
        program = parse(script)
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
    """Run a parsed program inside one database transaction: the interpreter reads balances
    through LedgerStore (rows locked until commit), then its postings and metadata are stored.
    `raise_script_errors` lets the interpreter's NumscriptError through (for the CLI, which
    renders it against the source) instead of mapping it to a LedgerError."""
    if not isinstance(vars, Mapping) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in vars.items()
    ):
        raise InvalidTransaction("Script vars must map names to strings.")
    ref = validate_reference(reference)
    meta = validate_metadata(metadata)
    ts = validate_timestamp(timestamp)
    fingerprint = (
        request_fingerprint(postings=None, metadata=meta, script=source, vars=vars)
        if ref is not None
        else None
    )

    def replay_existing() -> ScriptOutcome | None:
        existing = Transaction.objects.filter(reference=ref).first() if ref else None
        if existing is None:
            return None
        item = writer.PreparedTx([], ref, meta, ts, {}, fingerprint)
        written = writer.Written(
            1,
            existing.pk,
            existing.timestamp,
            existing.inserted_at,
            True,
            existing.idempotency_hash,
        )
        return ScriptOutcome(post=replay(item, written), execution=None)

    replayed = replay_existing()
    if replayed is not None:
        return replayed

    @retry_on_conflict
    def attempt() -> ScriptOutcome:
        with transaction.atomic(durable=not connection.in_atomic_block):
            store = LedgerStore()
            started = time.perf_counter()
            try:
                result = run(program, vars=vars, store=store, feature_flags=feature_flags)
            except NumscriptError as exc:
                if raise_script_errors:
                    raise
                raise script_error(exc) from None
            if timings is not None:
                timings["interpreter"] = time.perf_counter() - started - store.seconds
                timings["store"] = store.seconds
            postings = [
                PostingInput(p.source, p.destination, ledger_asset(p.asset, p.color), p.amount)
                for p in result.postings
                if p.amount > 0
            ]
            if not postings:
                raise InvalidTransaction("The script produced no postings.")
            postings = validate_postings(postings)
            tx_meta = dict(meta)
            for key, value in result.tx_meta.items():
                if key in tx_meta and tx_meta[key] != value:
                    raise ScriptError(
                        f"Metadata {key!r} is set both by the request and by the script, "
                        "with different values.",
                        extra={"key": key},
                    )
                tx_meta[key] = value
            item = writer.PreparedTx(postings, ref, tx_meta, ts, {}, fingerprint)
            if dry_run:
                now = timezone.now()
                tx = Transaction(
                    id=None,
                    reference=ref,
                    timestamp=ts or now,
                    inserted_at=now,  # else the field's db_default, which cannot be serialized
                    metadata=tx_meta,
                    idempotency_hash=None,
                )
                transaction.set_rollback(True)
                post = PostResult(
                    transaction=tx,
                    replayed=False,
                    postings=tuple(postings),
                    account_meta=result.account_meta,
                    dry_run=True,
                )
                return ScriptOutcome(post=post, execution=result)
            plan = plan_postings([(postings, {})], check=False)
            for balance_key in plan.keys:
                if (balance_key.address, balance_key.asset) in store.locked:
                    # The interpreter checked these funds against the locked rows: the change
                    # must land in those rows (a "checked" key, whose check always passes),
                    # not in a new shard row that a concurrent locker's snapshot cannot see.
                    balance_key.required = ALWAYS_PASSES
            try:
                if connection.vendor == "postgresql" and _fast():
                    written = writer.write_postgres([item], plan, writer_shard())[0]
                else:
                    written = writer.write_portable([item], plan, writer_shard())[0]
            except DataError as exc:
                if getattr(exc.__cause__, "sqlstate", None) != "22003":  # numeric out of range
                    raise
                raise InvalidAmount(
                    "The transaction would take an account's volumes beyond the maximum "
                    f"storable amount {MAX_AMOUNT}."
                ) from None
            if written.replayed:
                return ScriptOutcome(post=replay(item, written), execution=None)
            for address, values in sorted(result.account_meta.items()):
                account_metadata_set(
                    address=address, metadata=values, actor=actor, transaction_id=written.id
                )
            seal_soon()
            post = PostResult(
                transaction=transaction_from(item, written),
                replayed=False,
                postings=tuple(postings),
                account_meta=result.account_meta,
            )
            return ScriptOutcome(post=post, execution=result)

    try:
        return attempt()
    except IntegrityError:
        # a concurrent writer posted the same reference first: replay it (or conflict)
        replayed = replay_existing()
        if replayed is None:
            raise
        return replayed


def _fast() -> bool:
    return conf.get("LEDGER_WRITE_PATH") == "postgres"
