"""What a Numscript run reads before its write, on the PostgreSQL fast path: one unlocked
read per run (`snapshot_read`), a store that answers the interpreter from it
(`SnapshotStore`), and the per-template read plan that says what to read (`learn_reads`).

Nothing here is trusted for correctness: the snapshot is unlocked, and the read plan is a
guess learned from the template's previous run. Every balance the interpreter is answered
is recorded (`SnapshotStore.read`) and the write (`ledger_post`) checks each one, under the
row locks it takes in the global order, against the locked balance: if one moved, nothing is
written and the script runs again under locks (`ledger.services.scripts`). A read the plan did
not foresee is fetched when the interpreter asks (one more round trip, same snapshot rules).
Account metadata is read without locks, as the locked path reads it.
"""

from __future__ import annotations

import json
import threading
import time
from collections import OrderedDict
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field, replace
from fractions import Fraction
from typing import Generic, TypeVar

from ledger.domain import validate_address, validate_asset
from ledger.errors import LedgerError
from ledger.lock_objects import execute_fetchall
from ledger.numscript import Program, Unspeculable
from ledger.writer import text_array

ALL_SCALES = "/*"
V = TypeVar("V")


def ledger_asset(asset: str, color: str) -> str:
    """Numscript (asset, color) -> ledger asset: ("USD/2", "RED") -> "USD_RED/2"."""
    if not color:
        return asset
    base, slash, scale = asset.partition("/")
    return f"{base}_{color}{slash}{scale}"


class MetadataNotCached(Exception):
    """A speculative run asked for account metadata this process has not seen: run the
    ordinary way (which reads it, and remembers it for the next run)."""


class NeedsLocks(Exception):
    """The run asked for something a snapshot cannot vouch for (every scale of an asset: the
    set of rows itself could change): run it under locks instead."""


@dataclass(slots=True)
class Snapshot:
    existing_id: int | None = None  # the transaction already holding the reference
    metadata: dict[str, dict[str, str] | None] = field(default_factory=dict)  # None: no account
    balances: dict[tuple[str, str], int] = field(default_factory=dict)  # (address, ledger asset)


_READ_SQL = (
    "SELECT o_tx, o_meta, o_bal FROM ledger_script_read(%s::text, %s::text[], %s::text[], "
    "%s::text[])"
)


def _read(
    accounts: Sequence[str], keys: Sequence[tuple[str, str]], reference: str | None
) -> Snapshot:
    """One call of `ledger_script_read` (ledger/pgsql.py)."""
    [(existing_id, metadata, balances)] = execute_fetchall(
        _READ_SQL,
        [
            reference,
            text_array(accounts),
            text_array([address for address, _asset in keys]),
            text_array([asset for _address, asset in keys]),
        ],
    )
    snapshot = Snapshot(existing_id=existing_id)
    for address, meta in zip(accounts, metadata or (), strict=False):
        snapshot.metadata[address] = None if meta is None else json.loads(meta)
    for key, balance in zip(keys, balances or (), strict=False):
        snapshot.balances[key] = int(balance)
    return snapshot


def snapshot_read(program: Program, vars: Mapping[str, str], reference: str | None) -> Snapshot:
    """One round trip: the reference's transaction, and the metadata and balances that this
    template's previous run asked for, resolved against these vars."""
    plan = _PLANS.get(program.source)
    accounts: list[str] = []
    keys: list[tuple[str, str]] = []
    if plan is not None:
        accounts = [a for a in (_resolve(ref, vars) for ref in plan.metadata) if a]
        for account_ref, asset_ref in plan.balances:
            address, asset = _resolve(account_ref, vars), _resolve_asset(asset_ref, vars)
            if address and asset:
                keys.append((address, asset))
    if not accounts and not keys and reference is None:
        return Snapshot()
    return _read(accounts, keys, reference)


class SnapshotStore:
    """The interpreter's store over a snapshot: misses are read (unlocked) when asked; every
    balance answered is recorded in `read`, for the write to check under its locks."""

    def __init__(self, snapshot: Snapshot) -> None:
        self.snapshot = snapshot
        self.read: dict[tuple[str, str], int] = {}
        self.metadata_asked: list[str] = []
        self.missed = False  # asked for something the snapshot did not hold
        self.seconds = 0.0  # time spent in the database, for the benchmark's interpreter share

    def get_balances(
        self, query: Mapping[str, Collection[tuple[str, str]]]
    ) -> dict[str, dict[tuple[str, str], int]]:
        balances = self.snapshot.balances
        missing: list[tuple[str, str]] = []
        for account, wanted in query.items():
            validate_address(account)
            for asset, color in wanted:
                if asset.endswith(ALL_SCALES):
                    raise NeedsLocks
                key = (account, ledger_asset(asset, color))
                if key not in balances:
                    missing.append(key)
        if missing:
            self.missed = True
            started = time.perf_counter()
            balances.update(_read([], missing, None).balances)
            self.seconds += time.perf_counter() - started
        answer: dict[str, dict[tuple[str, str], int]] = {}
        for account, wanted in query.items():
            rows = answer[account] = {}
            for asset, color in wanted:
                key = (account, ledger_asset(asset, color))
                rows[(asset, color)] = self.read[key] = balances[key]
        return answer

    def get_account_metadata(self, accounts: Collection[str]) -> dict[str, dict[str, str]]:
        metadata = self.snapshot.metadata
        missing = [a for a in accounts if a not in metadata]
        if missing:
            self.missed = True
            started = time.perf_counter()
            metadata.update(_read(missing, [], None).metadata)
            self.seconds += time.perf_counter() - started
        self.metadata_asked.extend(accounts)
        for address in accounts:  # the guesses of the next speculative runs
            if (found := metadata.get(address)) is not None:
                remember_metadata(address, found)
        return {a: dict(m) for a in accounts if (m := metadata.get(a)) is not None}


@dataclass(frozen=True, slots=True)
class Drain:
    """A run's last `send [A *]`, left to the write (see ledger.numscript.store): the whole of
    `key`'s locked balance plus `held`, split by `parts` [(portion, destination address)]."""

    key: tuple[str, str]  # (address, ledger asset)
    held: int
    parts: tuple[tuple[Fraction, str], ...]


class SpeculativeStore:
    """The interpreter's store for a run without any read (see ledger.numscript.store): every
    balance answers 0 and the interpreter reports, per balance a bounded source takes from,
    the smallest stored balance for which the real run takes the same (`required`, ledger
    assets); the write checks each under its row locks (`ledger_post`'s `required`, LD001).
    A last `send [A *]` of the simple kind is handed over as a `Drain`, which the write
    computes on the balance it locks (`ledger_post`). Account metadata is answered as
    this process last read it (`metadata_used`; the write checks it is still what is stored,
    LD004), or not at all (MetadataNotCached). Every-scale queries are not speculated on."""

    speculative = True

    def __init__(self) -> None:
        self.required: dict[tuple[str, str], int] = {}  # (address, ledger asset) -> minimum
        self.metadata_used: dict[str, str] = {}  # address -> the metadata used, JSON
        self.drained: Drain | None = None

    def get_balances(
        self, query: Mapping[str, Collection[tuple[str, str]]]
    ) -> dict[str, dict[tuple[str, str], int]]:
        for account, wanted in query.items():
            validate_address(account)
            if any(asset.endswith(ALL_SCALES) for asset, _color in wanted):
                raise Unspeculable("every scale of an asset")
        return {account: {} for account in query}

    def get_account_metadata(self, accounts: Collection[str]) -> dict[str, dict[str, str]]:
        answer = {}
        for address in accounts:
            known = _METADATA.get(address)
            if known is None:
                raise MetadataNotCached(address)
            metadata, self.metadata_used[address] = known
            answer[address] = dict(metadata)
        return answer

    def require(self, key: tuple[str, str, str], minimum: int) -> None:
        account, asset, color = key
        target = (account, ledger_asset(asset, color))
        known = self.required.get(target)
        if known is None or minimum > known:
            self.required[target] = minimum

    def drain(
        self, key: tuple[str, str, str], held: int, parts: Sequence[tuple[Fraction, str]]
    ) -> None:
        account, asset, color = key
        validate_address(account)
        for _portion, address in parts:
            validate_address(address)
        self.drained = Drain((account, ledger_asset(asset, color)), held, tuple(parts))


# --- read plans, per template ----------------------------------------------------------------

# A value in a read plan: (True, var name) for "the value of this var", (False, text) for a
# literal the template names itself (or a value no var had).
Ref = tuple[bool, str]


@dataclass(frozen=True, slots=True)
class ReadPlan:
    metadata: tuple[Ref, ...]
    balances: tuple[tuple[Ref, Ref], ...]
    # Run without reading (SpeculativeStore) while this is true: a template whose run needed
    # an exact balance (Unspeculable) is not tried again.
    speculate: bool = True
    # Speculative writes that failed their checks since the last that held (see
    # `should_speculate`).
    misses: int = 0


class _Lru(Generic[V]):
    """Values by key, least recently used out (bounded: any API client can post a script, name
    any account). Thread-safe."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._entries: OrderedDict[str, V] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: str) -> V | None:
        with self._lock:
            value = self._entries.get(key)
            if value is not None:
                self._entries.move_to_end(key)
            return value

    def peek(self, key: str) -> V | None:
        """`get` without the lock or the recency update (a dict read is atomic)."""
        return self._entries.get(key)

    def put(self, key: str, value: V) -> None:
        with self._lock:
            self._entries[key] = value
            self._entries.move_to_end(key)
            while len(self._entries) > self.size:
                self._entries.popitem(last=False)

    def discard(self, key: str) -> None:
        with self._lock:
            self._entries.pop(key, None)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()


#: Read plans, by template source.
_PLANS: _Lru[ReadPlan] = _Lru(512)
#: Account metadata as this process last read it, by address, and as JSON: what a speculative
#: run answers `meta()` with. Only a guess: the write checks it is the stored metadata (LD004).
_METADATA: _Lru[tuple[dict[str, str], str]] = _Lru(8192)


def remember_metadata(address: str, metadata: Mapping[str, str]) -> None:
    """Metadata just read: the speculative runs' guess from now on."""
    known = _METADATA.peek(address)
    if known is None or known[0] != metadata:
        _METADATA.put(address, (dict(metadata), json.dumps(metadata, separators=(",", ":"))))


def forget_metadata(address: str) -> None:
    """This process changed the account's metadata: the next speculative run reads it again."""
    _METADATA.discard(address)


def _resolve(ref: Ref, vars: Mapping[str, str]) -> str | None:
    """The address a ref stands for with these vars (None: not a valid address)."""
    from_var, text = ref
    value = vars.get(text) if from_var else text
    try:
        return validate_address(value) if value else None
    except LedgerError:
        return None


def _resolve_asset(ref: Ref, vars: Mapping[str, str]) -> str | None:
    from_var, text = ref
    value = vars.get(text) if from_var else text
    if not value:
        return None
    try:  # an asset, or a monetary "USD/2 100"
        return validate_asset(value.split(" ", 1)[0])
    except LedgerError:
        return None


def learn_reads(program: Program, vars: Mapping[str, str], store: SnapshotStore) -> None:
    """Remember what this run asked for, in terms of its vars, for the template's next run
    (nothing to learn when the snapshot held all of it)."""
    if not store.missed and (store.read or store.metadata_asked):
        return
    by_value: dict[str, str] = {}
    by_asset: dict[str, str] = {}
    for name, value in vars.items():
        by_value.setdefault(value, name)
        by_asset.setdefault(value.split(" ", 1)[0], name)

    def ref(value: str, index: dict[str, str]) -> Ref:
        name = index.get(value)
        return (True, name) if name is not None else (False, value)

    known = _PLANS.get(program.source)
    plan = ReadPlan(
        metadata=tuple(dict.fromkeys(ref(a, by_value) for a in store.metadata_asked)),
        balances=tuple(
            (ref(address, by_value), ref(asset, by_asset)) for address, asset in store.read
        ),
        speculate=known.speculate if known is not None else True,
        misses=known.misses if known is not None else 0,
    )
    if plan != known:
        _PLANS.put(program.source, plan)


def read_plan(program: Program) -> ReadPlan | None:
    """The template's learned read plan, if it ran before in this process."""
    return _PLANS.get(program.source)


#: A template whose speculative write failed its checks this many times in a row is run the
#: ordinary way, but for one speculative try every SPECULATION_RETRY runs.
SPECULATION_MISSES = 3
SPECULATION_RETRY = 256


def should_speculate(program: Program) -> bool:
    """Run this template without reading? Only once its read plan is known, if no run of it
    needed an exact balance (other than a final drain), and unless its speculative writes keep
    failing their checks (then once in a while)."""
    plan = _PLANS.get(program.source)
    if plan is None or not plan.speculate:
        return False
    if plan.misses < SPECULATION_MISSES:
        return True
    _PLANS.put(program.source, replace(plan, misses=plan.misses + 1))  # counts the runs
    return (plan.misses - SPECULATION_MISSES) % SPECULATION_RETRY == SPECULATION_RETRY - 1


def speculation_done(program: Program, *, hit: bool) -> None:
    """A speculative write succeeded (hit) or failed its checks (not hit)."""
    plan = _PLANS.peek(program.source)
    if plan is None or (hit and plan.misses == 0):  # the usual case: nothing to write
        return
    _PLANS.put(program.source, replace(plan, misses=0 if hit else plan.misses + 1))


def speculation_impossible(program: Program) -> None:
    """The template's run needed an exact balance: do not speculate on it again."""
    plan = _PLANS.peek(program.source)
    if plan is not None and plan.speculate:
        _PLANS.put(program.source, replace(plan, speculate=False))


def forget_read_plans() -> None:
    """Drop every learned read plan and remembered metadata (tests)."""
    _PLANS.clear()
    _METADATA.clear()


__all__ = [
    "Drain",
    "MetadataNotCached",
    "NeedsLocks",
    "Snapshot",
    "SnapshotStore",
    "SpeculativeStore",
    "forget_metadata",
    "forget_read_plans",
    "learn_reads",
    "read_plan",
    "remember_metadata",
    "should_speculate",
    "snapshot_read",
    "speculation_done",
    "speculation_impossible",
]
