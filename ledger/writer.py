"""Storing a plan: the PostgreSQL fast path (one `ledger_post(...)` call, one round trip) and the
portable path (the same steps from Python, for SQLite; also runnable on PostgreSQL, where the
tests prove both paths give the same results).

Both paths take the same inputs: validated transactions and the `Plan` that
`ledger.domain.plan_postings` computed from them, and do, in this order:

1. if any reference is already used: write nothing, return the stored transactions;
2. create missing accounts (address order);
3. claim the writer's shard (if a key is unchecked): the first slot of LEDGER_BALANCE_SHARDS,
   from the backend's own, that no other open transaction holds (a transaction-level
   advisory try-lock, released at commit: two writers in flight never share a shard row);
4. for each balance key in (address, asset) order, the global lock order: a checked key locks
   all its shard rows, compares their sum with `expect` if set (StaleRead otherwise), then with
   `required` (InsufficientFunds otherwise) and adds its volumes to its lowest shard; an
   unchecked key adds its volumes to the writer's shard row without reading it. A volume that
   would pass the bigint range is not written; after every key is checked, it fails the write
   (DataError 22003, which the services report as InvalidAmount);
5. insert the transactions, their sealer-queue rows and their postings.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg
from django.db import DEFAULT_DB_ALIAS, DatabaseError, DataError, IntegrityError, connections
from django.utils import timezone

from common.prepared import lift_threshold
from ledger import conf, lock_objects
from ledger.domain import BalanceKey, Plan, PostingInput
from ledger.errors import InsufficientFunds
from ledger.models import Posting, Transaction, Unsealed
from ledger.pgsql import (
    INSUFFICIENT_FUNDS_SQLSTATE,
    POST_PARAMS,
    SCRIPT_PARAMS,
    SHARD_SLOT_LOCK_SPACE,
    SPECULATION_REFUSED_SQLSTATE,
    STALE_READ_SQLSTATE,
)


@dataclass(slots=True)
class PreparedTx:
    """A validated transaction ready to store."""

    postings: list[PostingInput]
    reference: str | None
    metadata: dict[str, Any]
    timestamp: datetime | None
    overdraft: dict[str, int | None]
    fingerprint: str | None
    reverts: int | None = None


@dataclass(frozen=True, slots=True)
class Written:
    """One stored (or, when `replayed`, already existing) transaction. `ordinal` is 1-based."""

    ordinal: int
    id: int
    timestamp: datetime
    inserted_at: datetime
    replayed: bool
    stored_hash: str | None


class StaleRead(Exception):
    """A balance a Numscript run read before the write is no longer what it read, under the
    write's row locks: nothing was written; the script must run again (internal, never
    reaches a caller of the services)."""

    def __init__(self, key: BalanceKey, balance: int) -> None:
        super().__init__(f"{key.address} {key.asset}: read {key.expect}, now {balance}")
        self.key = key
        self.balance = balance


class VolumeOutOfRange(Exception):
    sqlstate = "22003"  # numeric_value_out_of_range, as PostgreSQL reports it


def balance_shards() -> int:
    """LEDGER_BALANCE_SHARDS on PostgreSQL; 1 elsewhere (SQLite serializes writers)."""
    if connections[DEFAULT_DB_ALIAS].vendor != "postgresql":
        return 1
    return max(1, int(conf.get("LEDGER_BALANCE_SHARDS")))


def insufficient_funds(key: BalanceKey, balance: int) -> InsufficientFunds:
    return InsufficientFunds(
        account=key.address,
        asset=key.asset,
        needed=key.needed,
        available=balance + key.bound,
        extra={"balance": balance, "overdraft": key.bound},
    )


def _post_sql(function: str, script: bool = False) -> str:
    params = POST_PARAMS + SCRIPT_PARAMS if script else POST_PARAMS
    arguments = ", ".join(f"%s::{kind}" for _name, kind in params)
    columns = ", o_parts" if script else ""
    return (
        f"SELECT o_ord, o_id, o_timestamp, o_inserted_at, o_replayed, o_hash{columns} "
        f"FROM {function}({arguments})"
    )


_POST_SQL = _post_sql("ledger_post")
_GUARDED_POST_SQL = _post_sql("ledger_post_guarded")
_SCRIPT_POST_SQL = _post_sql("ledger_post", script=True)
_GUARDED_SCRIPT_POST_SQL = _post_sql("ledger_post_guarded", script=True)


class UniqueViolation(IntegrityError):
    """A unique constraint (a reference or a revert taken by a concurrent writer) refused a
    guarded write; `constraint_name` names it (a raised error carries it in its diag)."""

    def __init__(self, message: str, constraint_name: str) -> None:
        super().__init__(message)
        self.constraint_name = constraint_name


def _error_class(sqlstate: str) -> type[psycopg.Error]:
    """psycopg's exception class for a SQLSTATE (its `sqlstate` attribute is that code), or a
    subclass of its generic DatabaseError carrying the code for one psycopg does not know."""
    try:
        return psycopg.errors.lookup(sqlstate)
    except KeyError:
        return type(f"SQLSTATE_{sqlstate}", (psycopg.DatabaseError,), {"sqlstate": sqlstate})


def _int_array(values: Iterable[int | None]) -> str:
    return "{" + ",".join(["NULL" if v is None else str(v) for v in values]) + "}"


def text_array(values: Iterable[str | None]) -> str:
    return (
        "{"
        + ",".join(
            [
                "NULL" if v is None else '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
                for v in values
            ]
        )
        + "}"
    )


def post_params(items: Sequence[PreparedTx], plan: Plan, shards: int) -> list[Any]:
    """The arguments of ledger_post(...), arrays as PostgreSQL array literals: psycopg's
    generic list adaptation (type detection per element) cost more than the rest of the Python
    side of a posting; addresses and assets are plain ASCII, references are escaped."""
    index = plan.address_index
    p_tx: list[str] = []
    p_idx: list[str] = []
    p_src: list[str] = []
    p_dst: list[str] = []
    p_assets: list[str] = []
    p_amounts: list[str] = []
    for ordinal, item in enumerate(items, 1):
        o = str(ordinal)
        for i, p in enumerate(item.postings):
            p_tx.append(o)
            p_idx.append(str(i))
            p_src.append(str(index[p.source] + 1))
            p_dst.append(str(index[p.destination] + 1))
            p_assets.append(p.asset)
            p_amounts.append(str(p.amount))
    keys = plan.keys
    single = len(items) == 1
    return [
        text_array([item.reference for item in items]),
        text_array([None if t is None else t.isoformat() for t in (i.timestamp for i in items)]),
        "[" + _json(items[0].metadata) + "]"
        if single
        else json.dumps([item.metadata for item in items], separators=(",", ":")),
        text_array([item.fingerprint for item in items]),
        _int_array([item.reverts for item in items]),
        '{"' + '","'.join(plan.addresses) + '"}',  # validated: [a-zA-Z0-9_:-] only
        "{" + ",".join(p_tx) + "}",
        "{" + ",".join(p_idx) + "}",
        "{" + ",".join(p_src) + "}",
        "{" + ",".join(p_dst) + "}",
        '{"' + '","'.join(p_assets) + '"}',  # validated: [A-Z0-9_/] only
        "{" + ",".join(p_amounts) + "}",
        "{" + ",".join([str(index[k.address] + 1) for k in keys]) + "}",
        '{"' + '","'.join([k.asset for k in keys]) + '"}',
        "{" + ",".join([str(k.input) for k in keys]) + "}",
        "{" + ",".join([str(k.output) for k in keys]) + "}",
        _int_array([k.required for k in keys]),
        _int_array([k.expect for k in keys]),
        shards,
    ]


def _json(value: Any) -> str:
    return "{}" if not value else json.dumps(value, separators=(",", ":"))


def write_postgres(
    items: Sequence[PreparedTx], plan: Plan, *, guarded: bool = False
) -> list[Written]:
    """One statement. Raises InsufficientFunds, StaleRead; lets IntegrityError (a reference or
    a revert raced by a concurrent writer), DataError 22003 (a volume out of range) and
    deadlock errors through to the service.

    `guarded` (inside a caller's transaction, instead of a savepoint around the call): the
    call is `ledger_post_guarded`, whose failure rolls back only itself and is raised here as
    the same error; the caller's transaction stays usable, as after a rolled-back savepoint.

    It bypasses Django's client-side-binding cursor for a psycopg cursor with server-side
    binding and a prepared statement (parsed and planned once per connection); errors are still
    mapped to Django's exceptions and the connection's state kept by `wrap_database_errors`."""
    rows = _call(
        _GUARDED_POST_SQL if guarded else _POST_SQL,
        post_params(items, plan, balance_shards()),
        plan,
    )
    if len(rows) > 1 and rows[0][4]:
        # the stored transactions of used references, in item order as the portable path
        # returns them (ledger_post's rows come in its plan's order, a generic plan's differs)
        rows.sort(key=lambda row: row[0])
    return [Written(*row) for row in rows]


@dataclass(frozen=True, slots=True)
class ScriptChecks:
    """What a speculative Numscript run leaves to `ledger_post`: the account metadata it used
    (address -> the whole metadata as the process last read it, JSON), and its final drain,
    always of the plan's first key (`drain_held`, None without a drain; `drain_parts`:
    (numerator, denominator, destination key index) per part, whose postings are the last of
    the transaction, sent with amount 0)."""

    metadata: dict[str, str]
    drain_held: int | None = None
    drain_parts: tuple[tuple[int, int, int], ...] = ()


class SpeculationRefused(Exception):
    """`ledger_post` wrote nothing: the metadata a speculative run used changed, or its drain's
    total or a part is not positive (LD004); the script must run the ordinary way (internal,
    never reaches a caller of the services)."""


def write_script(
    item: PreparedTx, plan: Plan, checks: ScriptChecks, *, guarded: bool = False
) -> tuple[Written, list[int]]:
    """`write_postgres` for one speculative Numscript run, with its metadata checked and its
    drain computed by the write: also raises SpeculationRefused. Returns the transaction and its
    drain's parts (empty without a drain, or for a replay)."""
    params = post_params([item], plan, balance_shards())
    metadata = checks.metadata
    params += [text_array(metadata), text_array(metadata.values())]
    if checks.drain_held is None:
        params += [None, None, "{}", "{}", "{}"]
    else:
        nums: list[str] = []
        dens: list[str] = []
        keys: list[str] = []
        for num, den, key in checks.drain_parts:
            nums.append(str(num))
            dens.append(str(den))
            keys.append(str(key + 1))
        params += [
            "1",  # the first key
            str(checks.drain_held),
            "{" + ",".join(nums) + "}",
            "{" + ",".join(dens) + "}",
            "{" + ",".join(keys) + "}",
        ]
    [row] = _call(_GUARDED_SCRIPT_POST_SQL if guarded else _SCRIPT_POST_SQL, params, plan)
    return Written(*row[:6]), list(row[6] or ())


def _call(sql: str, params: list[Any], plan: Plan) -> list[tuple[Any, ...]]:
    """One prepared call of a ledger_post function; its refusals raised as the services'."""
    db = connections[DEFAULT_DB_ALIAS]  # the thread's wrapper, looked up once
    db.ensure_connection()
    raw = db.connection
    refused: tuple[str, str] | None = None  # (SQLSTATE, detail) of LD001 / LD003 / LD004
    try:
        with db.wrap_database_errors:
            cursor = psycopg.Cursor(raw)
            # parsed and planned once per connection wherever preparing is on (never behind
            # PgBouncer), also outside `prepared_statements()`
            lift = lift_threshold(db)
            try:
                cursor.execute(sql, params, prepare=True, binary=True)
                rows = cursor.fetchall()
            finally:
                if lift:
                    raw.prepare_threshold = None  # type: ignore[union-attr]
                cursor.close()
            if rows and rows[0][0] == 0:  # a guarded call's failure, rolled back
                refused = _guarded_failure(rows[0][5])
    except DatabaseError as exc:
        cause = exc.__cause__
        sqlstate = getattr(cause, "sqlstate", None)
        if sqlstate not in _REFUSALS:
            raise
        refused = (sqlstate, cause.diag.message_detail or "1|0")  # type: ignore[union-attr]
    if refused is None:
        return rows
    sqlstate, detail = refused
    if sqlstate == SPECULATION_REFUSED_SQLSTATE:
        raise SpeculationRefused(detail)
    key_number, _, balance = detail.partition("|")
    key = plan.keys[int(key_number) - 1]
    if sqlstate == STALE_READ_SQLSTATE:
        raise StaleRead(key, int(balance))
    raise insufficient_funds(key, int(balance))


_REFUSALS = (INSUFFICIENT_FUNDS_SQLSTATE, STALE_READ_SQLSTATE, SPECULATION_REFUSED_SQLSTATE)


def _guarded_failure(failure: str) -> tuple[str, str]:
    """A failure row of `ledger_post_guarded` ('SQLSTATE|constraint|message|detail'): raised as
    the error ledger_post would have raised (inside `wrap_database_errors`, so Django maps it
    the same way), but for a refusal (LD001, LD003, LD004), returned as (SQLSTATE, detail)."""
    sqlstate, constraint, message, detail = failure.split("|", 3)
    if sqlstate in _REFUSALS:
        return sqlstate, detail or "1|0"
    if sqlstate == "23505":
        raise UniqueViolation(message, constraint)
    raise _error_class(sqlstate)(f"{message} (SQLSTATE {sqlstate})")


def _claim_shard(plan: Plan) -> int:
    """Step 3 of `ledger_post`, from Python (portable path)."""
    shards = balance_shards()
    if shards <= 1 or all(key.required is not None for key in plan.keys):
        return 0
    db = connections[DEFAULT_DB_ALIAS]
    db.ensure_connection()
    own = db.connection.info.backend_pid % shards  # type: ignore[union-attr]
    with db.cursor() as cursor:
        for k in range(shards):
            cursor.execute(
                "SELECT pg_try_advisory_xact_lock(%s, %s)",
                [SHARD_SLOT_LOCK_SPACE, (own + k) % shards],
            )
            if cursor.fetchone()[0]:
                return (own + k) % shards
    return own


def write_portable(items: Sequence[PreparedTx], plan: Plan) -> list[Written]:
    """The same steps as `ledger_post`, one statement at a time (must run inside atomic)."""
    references = [item.reference for item in items]
    wanted = {ref: ordinal for ordinal, ref in enumerate(references, 1) if ref is not None}
    if wanted:
        existing = Transaction.objects.filter(reference__in=list(wanted)).values_list(
            "reference", "id", "timestamp", "inserted_at", "idempotency_hash"
        )
        found = [
            Written(wanted[str(ref)], id_, ts, ins, True, h) for ref, id_, ts, ins, h in existing
        ]
        if found:
            return sorted(found, key=lambda w: w.ordinal)

    now = timezone.now()
    account_ids = lock_objects.accounts_get_or_create(addresses=plan.addresses, now=now)
    shard = _claim_shard(plan)

    overflow = False
    for key in plan.keys:
        account_id = account_ids[key.address]
        if key.required is None:
            overflow |= not lock_objects.balance_shard_add(
                account_id=account_id,
                asset=key.asset,
                shard=shard,
                input=key.input,
                output=key.output,
            )
            continue
        while True:
            rows = lock_objects.balance_shards_lock(account_id=account_id, asset=key.asset)
            balance = sum(i - o for _shard, i, o in rows)
            if key.expect is not None and balance != key.expect:
                raise StaleRead(key, balance)
            if balance < key.required:
                raise insufficient_funds(key, balance)
            if rows:
                if key.input or key.output:
                    overflow |= not lock_objects.balance_shard_add(
                        account_id=account_id,
                        asset=key.asset,
                        shard=rows[0][0],
                        input=key.input,
                        output=key.output,
                    )
                break
            if lock_objects.balance_shard_create(
                account_id=account_id, asset=key.asset, input=key.input, output=key.output
            ):
                break
    if overflow:
        raise DataError("ledger: volume out of bigint range") from VolumeOutOfRange()

    transactions = Transaction.objects.bulk_create(
        [
            Transaction(
                reference=item.reference,
                timestamp=item.timestamp or now,
                inserted_at=now,
                metadata=item.metadata,
                idempotency_hash=item.fingerprint,
                reverts_id=item.reverts,
            )
            for item in items
        ]
    )
    Unsealed.objects.bulk_create([Unsealed(transaction_id=tx.pk) for tx in transactions])
    Posting.objects.bulk_create(
        [
            Posting(
                transaction_id=tx.pk,
                index=i,
                source_id=account_ids[p.source],
                destination_id=account_ids[p.destination],
                asset=p.asset,
                amount=p.amount,
                timestamp=tx.timestamp,
            )
            for tx, item in zip(transactions, items, strict=True)
            for i, p in enumerate(item.postings)
        ]
    )
    return [
        Written(ordinal, tx.pk, tx.timestamp, now, False, tx.idempotency_hash)
        for ordinal, tx in enumerate(transactions, 1)
    ]
