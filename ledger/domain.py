"""Pure rules of the ledger: validation, the posting plan, canonical encodings. No database.

This module is the ONE source of truth for the business rules. The PostgreSQL function and the
portable Python writer (ledger/writer.py) only store what `plan_postings` decided and compare a
locked balance against the `required` figure it computed.

Overdraft rule (Numscript's, applied to plain postings in order): after each posting, its
source's running balance must be >= -bound, where bound is 0 by default, the caller's bound
for that source, or unbounded (`world`, or `overdraft={source: None}`). For an account that is
checked, this reduces to one figure computed here without the database:

    required = max over postings p debiting the account of ( -bound_p - delta_after_p )

where delta_after_p is the account's running change in this transaction (or bulk batch) just
after p. The database then only checks `locked balance >= required`.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from ledger.errors import (
    InvalidAddress,
    InvalidAmount,
    InvalidAsset,
    InvalidMetadata,
    InvalidPattern,
    InvalidReference,
    InvalidTimestamp,
    InvalidTransaction,
)

WORLD = "world"
MAX_AMOUNT = 2**63 - 1  # amounts and volumes are PostgreSQL bigint
MAX_ADDRESS_LENGTH = 255
MAX_ASSET_LENGTH = 64
MAX_REFERENCE_LENGTH = 255
MAX_METADATA_KEY_LENGTH = 255
MAX_POSTINGS = 50_000
ADDRESS_RE = re.compile(r"^[a-zA-Z0-9_-]+(:[a-zA-Z0-9_-]+)*$")
# Numscript's asset form: base, optional color suffix, optional scale: USD/2, EUR_RED/2, JPY, COIN
ASSET_RE = re.compile(r"^[A-Z][A-Z0-9]{0,16}(_[A-Z]{1,16})?(/[0-9]{1,6})?$")
PATTERN_SEGMENT_RE = re.compile(r"^(\*|\*\*|[a-zA-Z0-9_-]+)$")


@dataclass(frozen=True, slots=True)
class PostingInput:
    """One movement of `amount` (minor units of `asset`) from `source` to `destination`."""

    source: str
    destination: str
    asset: str
    amount: int

    def as_dict(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "destination": self.destination,
            "asset": self.asset,
            "amount": self.amount,
        }


@dataclass(frozen=True, slots=True)
class TxInput:
    """One transaction of a bulk call (same fields as `transaction_post`'s arguments)."""

    postings: Sequence[PostingInput | Mapping[str, Any]]
    reference: str | None = None
    metadata: Mapping[str, Any] | None = None
    timestamp: datetime | None = None
    overdraft: Mapping[str, int | None] | None = None


@dataclass(frozen=True, slots=True)
class Volumes:
    input: int
    output: int

    @property
    def balance(self) -> int:
        return self.input - self.output


@dataclass(slots=True)
class BalanceKey:
    """What one transaction (or batch) does to one (account, asset).

    `required` is None when the account is not checked (only credited, `world`, or an
    unbounded overdraft on every debit); otherwise the locked balance must be >= required."""

    address: str
    asset: str
    input: int = 0
    output: int = 0
    required: int | None = None
    # for the error message: the largest debit excess and the bound at that point
    needed: int = 0
    bound: int = 0
    # a Numscript run read this balance before the write: it must still be exactly this
    # under the write's row locks (else the read is stale and the script runs again)
    expect: int | None = None


@dataclass(slots=True)
class Plan:
    """The storage-ready form of a batch of validated transactions."""

    addresses: list[str]  # distinct, sorted: the global lock order of account rows
    keys: list[BalanceKey]  # sorted by (address, asset): the global lock order of balances
    address_index: dict[str, int] = field(default_factory=dict)


# --- validation ----------------------------------------------------------------------------


def validate_address(address: Any) -> str:
    if not isinstance(address, str) or not ADDRESS_RE.match(address):
        raise InvalidAddress(
            f"Invalid account address {address!r}: expected segments of letters, digits, "
            "'_' or '-' separated by ':'.",
            extra={"address": address if isinstance(address, str) else repr(address)},
        )
    if len(address) > MAX_ADDRESS_LENGTH:
        raise InvalidAddress(
            f"Account address is {len(address)} characters long; the maximum is "
            f"{MAX_ADDRESS_LENGTH}.",
            extra={"address": address[:64] + "..."},
        )
    return address


def validate_asset(asset: Any) -> str:
    if not isinstance(asset, str) or not ASSET_RE.match(asset):
        raise InvalidAsset(
            f"Invalid asset {asset!r}: expected Numscript form like USD/2, EUR/2, JPY or COIN.",
            extra={"asset": asset if isinstance(asset, str) else repr(asset)},
        )
    return asset


def validate_amount(amount: Any) -> int:
    # bool is an int in Python; a JSON `true` is not an amount.
    if not isinstance(amount, int) or isinstance(amount, bool):
        raise InvalidAmount(
            f"Invalid amount {amount!r}: expected an integer number of minor units.",
            extra={"amount": repr(amount)},
        )
    if amount <= 0:
        raise InvalidAmount(
            f"Invalid amount {amount}: must be greater than zero.", extra={"amount": str(amount)}
        )
    if amount > MAX_AMOUNT:
        raise InvalidAmount(
            f"Invalid amount {amount}: larger than the maximum storable amount {MAX_AMOUNT} "
            "(2**63-1).",
            extra={"amount": str(amount)},
        )
    return amount


def validate_reference(reference: Any) -> str | None:
    if reference is None:
        return None
    if not isinstance(reference, str) or not reference or len(reference) > MAX_REFERENCE_LENGTH:
        raise InvalidReference(
            f"Invalid reference {reference!r}: expected a non-empty string of at most "
            f"{MAX_REFERENCE_LENGTH} characters."
        )
    return reference


def validate_timestamp(timestamp: Any) -> datetime | None:
    if timestamp is None:
        return None
    if not isinstance(timestamp, datetime) or timestamp.tzinfo is None:
        raise InvalidTimestamp(f"Invalid timestamp {timestamp!r}: expected an aware datetime.")
    return timestamp.astimezone(UTC)


def _validate_json_value(value: Any, path: str) -> None:
    if value is None or isinstance(value, str | bool | int):
        if isinstance(value, int) and not isinstance(value, bool) and abs(value) > MAX_AMOUNT:
            raise InvalidMetadata(f"Metadata value at {path} is out of range.")
        return
    if isinstance(value, list | tuple):
        for i, item in enumerate(value):
            _validate_json_value(item, f"{path}[{i}]")
        return
    if isinstance(value, Mapping):
        for key, item in value.items():
            if not isinstance(key, str):
                raise InvalidMetadata(f"Metadata key {key!r} at {path} is not a string.")
            _validate_json_value(item, f"{path}.{key}")
        return
    # Floats are refused on purpose: money is never a float, and canonical hashing of floats
    # is a trap. Strings, integers, booleans, null, lists and objects are accepted.
    raise InvalidMetadata(
        f"Metadata value at {path} has unsupported type {type(value).__name__}: use strings, "
        "integers, booleans, null, lists or objects."
    )


def validate_metadata(metadata: Any) -> dict[str, Any]:
    if metadata is None:
        return {}
    if not isinstance(metadata, Mapping):
        raise InvalidMetadata("Metadata must be an object of string keys.")
    for key in metadata:
        if not isinstance(key, str) or not key or len(key) > MAX_METADATA_KEY_LENGTH:
            raise InvalidMetadata(f"Invalid metadata key {key!r}.")
    _validate_json_value(metadata, "metadata")
    return dict(metadata)


def validate_account_metadata(metadata: Any) -> dict[str, str]:
    """Account metadata is string to string (Numscript's `meta()` reads strings)."""
    if not isinstance(metadata, Mapping) or not metadata:
        raise InvalidMetadata("Account metadata must be a non-empty object of string values.")
    for key, value in metadata.items():
        if not isinstance(key, str) or not key or len(key) > MAX_METADATA_KEY_LENGTH:
            raise InvalidMetadata(f"Invalid metadata key {key!r}.")
        if not isinstance(value, str):
            raise InvalidMetadata(
                f"Account metadata value for {key!r} must be a string, not {type(value).__name__}."
            )
    return dict(metadata)


def validate_overdraft(overdraft: Any) -> dict[str, int | None]:
    if overdraft is None:
        return {}
    if not isinstance(overdraft, Mapping):
        raise InvalidTransaction("overdraft must map source addresses to a bound (or null).")
    result: dict[str, int | None] = {}
    for address, bound in overdraft.items():
        validate_address(address)
        if bound is not None:
            if not isinstance(bound, int) or isinstance(bound, bool) or bound < 0:
                raise InvalidAmount(
                    f"Invalid overdraft bound {bound!r} for {address}: expected an integer >= 0 "
                    "or null for unbounded."
                )
            if bound > MAX_AMOUNT:
                raise InvalidAmount(f"Overdraft bound for {address} is larger than {MAX_AMOUNT}.")
        result[address] = bound
    return result


def validate_postings(postings: Any) -> list[PostingInput]:
    if postings is None or isinstance(postings, str | bytes | Mapping):
        raise InvalidTransaction("A transaction needs a list of postings.")
    result = []
    for item in postings:
        if isinstance(item, PostingInput):
            p = item
        elif isinstance(item, Mapping):
            unknown = set(item) - {"source", "destination", "asset", "amount"}
            if unknown:
                raise InvalidTransaction(f"Unknown posting field(s): {', '.join(sorted(unknown))}.")
            p = PostingInput(
                source=item.get("source"),  # type: ignore[arg-type]
                destination=item.get("destination"),  # type: ignore[arg-type]
                asset=item.get("asset"),  # type: ignore[arg-type]
                amount=item.get("amount"),  # type: ignore[arg-type]
            )
        else:
            raise InvalidTransaction(f"A posting must be an object, not {type(item).__name__}.")
        validate_address(p.source)
        validate_address(p.destination)
        validate_asset(p.asset)
        validate_amount(p.amount)
        result.append(p)
    if not result:
        raise InvalidTransaction("A transaction needs at least one posting.")
    if len(result) > MAX_POSTINGS:
        raise InvalidTransaction(f"A transaction holds at most {MAX_POSTINGS} postings.")
    return result


# --- the plan ------------------------------------------------------------------------------


def plan_postings(
    batches: Sequence[tuple[Sequence[PostingInput], Mapping[str, int | None]]],
    *,
    check: bool = True,
) -> Plan:
    """Aggregate a sequence of transactions (postings + overdraft map each) into per-(account,
    asset) volumes and the minimal starting balance each checked account needs.

    Transactions are applied in order, postings in order, so a batch is checked exactly as if
    its transactions were posted one after the other. `check=False` (a Numscript run, whose
    interpreter already checked the funds against locked balances, or a forced revert) leaves
    every key unchecked."""
    keys: dict[tuple[str, str], BalanceKey] = {}
    running: dict[tuple[str, str], int] = {}
    for postings, overdraft in batches:
        for p in postings:
            skey = (p.source, p.asset)
            dkey = (p.destination, p.asset)
            src = keys.get(skey)
            if src is None:
                src = keys[skey] = BalanceKey(p.source, p.asset)
            dst = keys.get(dkey)
            if dst is None:
                dst = keys[dkey] = BalanceKey(p.destination, p.asset)
            src.output += p.amount
            dst.input += p.amount
            after = running.get(skey, 0) - p.amount
            running[skey] = after
            running[dkey] = running.get(dkey, 0) + p.amount
            if not check or p.source == WORLD:
                continue
            bound = overdraft.get(p.source, 0)
            if bound is None:
                continue  # unbounded overdraft for this source
            required = -bound - after
            if src.required is None or required > src.required:
                src.required = required
                src.needed = -after
                src.bound = bound
    for key in keys.values():
        if key.input > MAX_AMOUNT or key.output > MAX_AMOUNT:
            raise InvalidAmount(
                f"The postings on {key.address} for {key.asset} add up to more than the "
                f"maximum storable amount {MAX_AMOUNT}.",
                extra={"account": key.address, "asset": key.asset},
            )
    addresses = sorted({k[0] for k in keys})
    ordered = [keys[k] for k in sorted(keys)]
    return Plan(
        addresses=addresses,
        keys=ordered,
        address_index={a: i for i, a in enumerate(addresses)},
    )


# --- canonical encodings -------------------------------------------------------------------


def iso_utc(value: datetime) -> str:
    """ISO-8601 in UTC with microseconds and a Z: 2024-05-01T12:00:00.000000Z."""
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def canonical_json(value: Any) -> bytes:
    return json.dumps(
        value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    ).encode("utf-8")


def request_fingerprint(
    *,
    postings: Sequence[PostingInput] | None,
    metadata: Mapping[str, Any],
    script: str | None = None,
    vars: Mapping[str, str] | None = None,
    reverts: int | None = None,
) -> str:
    """SHA-256 of what a caller asked for, to tell a replay from a conflicting reuse of a
    reference. The timestamp is compared separately (only when the replay states one)."""
    body: dict[str, Any] = {"metadata": metadata, "reverts": reverts}
    if script is not None:
        body["script"] = script
        body["vars"] = dict(vars or {})
    else:
        body["postings"] = [[p.source, p.destination, p.asset, p.amount] for p in postings or ()]
    return hashlib.sha256(canonical_json(body)).hexdigest()


GENESIS_HASH = "0" * 64


def transaction_canonical(
    *,
    id: int,
    reference: str | None,
    timestamp: datetime,
    inserted_at: datetime,
    metadata: Mapping[str, Any],
    postings: Sequence[tuple[str, str, str, int]],
    reverts: int | None,
) -> bytes:
    """The canonical encoding a seal hashes: sorted-key compact UTF-8 JSON of the transaction's
    id, reference, timestamps (ISO-8601 UTC, microseconds), reverted transaction id, metadata,
    and postings in order as [source, destination, asset, amount]."""
    return canonical_json(
        {
            "id": id,
            "reference": reference,
            "timestamp": iso_utc(timestamp),
            "inserted_at": iso_utc(inserted_at),
            "reverts": reverts,
            "metadata": metadata,
            "postings": [list(p) for p in postings],
        }
    )


def chain_hash(prev_hash: str, canonical: bytes) -> str:
    """hash_n = SHA-256(hex(hash_{n-1}) || "\\n" || canonical_n); the genesis prev is 64 zeros."""
    return hashlib.sha256(prev_hash.encode("ascii") + b"\n" + canonical).hexdigest()


# --- address patterns ----------------------------------------------------------------------


def validate_pattern(pattern: Any) -> str:
    if not isinstance(pattern, str) or not pattern:
        raise InvalidPattern(f"Invalid address pattern {pattern!r}.")
    for segment in pattern.split(":"):
        if not PATTERN_SEGMENT_RE.match(segment):
            raise InvalidPattern(
                f"Invalid address pattern {pattern!r}: each segment is a name, `*` (exactly one "
                "segment) or `**` (one or more segments)."
            )
    return pattern


def pattern_regex(pattern: str) -> str:
    """`restaurants:*:payouts:*` -> an anchored regex. `*` is one segment, `**` one or more."""
    parts = []
    for segment in validate_pattern(pattern).split(":"):
        if segment == "*":
            parts.append("[a-zA-Z0-9_-]+")
        elif segment == "**":
            parts.append("[a-zA-Z0-9_-]+(:[a-zA-Z0-9_-]+)*")
        else:
            parts.append(re.escape(segment))
    return "^" + ":".join(parts) + "$"


def pattern_prefix(pattern: str) -> str:
    """The literal leading segments of a pattern, with their trailing colon ('' if none)."""
    literal: list[str] = []
    for segment in pattern.split(":"):
        if segment in ("*", "**"):
            return ":".join(literal) + ":" if literal else ""
        literal.append(segment)
    return pattern  # no wildcard at all: the whole address


def pattern_matches(pattern: str, address: str) -> bool:
    return re.match(pattern_regex(pattern), address) is not None


# --- chart of accounts ---------------------------------------------------------------------

ACCOUNT_TYPES = ("asset", "liability", "equity", "revenue", "expense")
DEBIT_NORMAL = frozenset({"asset", "expense"})


@dataclass(frozen=True, slots=True)
class Chart:
    rules: tuple[tuple[str, str, re.Pattern[str]], ...]

    @classmethod
    def from_setting(cls, entries: Collection[tuple[str, str]]) -> Chart:
        rules = []
        for pattern, account_type in entries:
            if account_type not in ACCOUNT_TYPES:
                raise InvalidPattern(
                    f"Chart of accounts: {pattern!r} maps to unknown type {account_type!r}."
                )
            rules.append((pattern, account_type, re.compile(pattern_regex(pattern))))
        return cls(tuple(rules))

    def classify(self, address: str) -> str | None:
        """The type of the first pattern matching `address`, or None if none does."""
        for _pattern, account_type, regex in self.rules:
            if regex.match(address):
                return account_type
        return None


def asset_scale(asset: str) -> int:
    _base, _, scale = asset.partition("/")
    return int(scale) if scale else 0


def format_amount(asset: str, amount: int) -> str:
    """`USD/2`, 5900 -> '59.00'; `JPY`, 500 -> '500'."""
    scale = asset_scale(asset)
    if scale == 0:
        return str(amount)
    sign = "-" if amount < 0 else ""
    whole, frac = divmod(abs(amount), 10**scale)
    return f"{sign}{whole}.{frac:0{scale}d}"
