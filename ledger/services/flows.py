"""The one way to run an app's money-flow templates (Numscript `.num` files) on the ledger.

An app keeps its templates, with their spec files, in a folder of its own and describes it
once as a `FlowBook`; it runs them in one of two modes:

- **single** (`flow_post`): one template, one ledger transaction, through the script front end
  (`transaction_post(script=...)`, ledger/README.md): on PostgreSQL a template whose sources
  only need to be able to pay (every template of this product but the sweeps) is one write
  that checks those sources' minimums under lock, from its second run in a process; others
  read, then write with the reads checked; the portable path locks as the interpreter asks.
  Templates may read account metadata.
- **batch** (`flows_prepare` then `flows_post`, inside the caller's transaction): the balances
  every run reads are locked first, in one query, in the ledger's global order; the
  interpreter runs each template against those locked balances, applying each run's postings
  before the next (a batch behaves like transactions posted one after the other); the caller
  may drop runs; the postings are stored with one bulk ledger call. Hundreds of flows per
  round trip (payout scheduling and driving).

The overdraft rule is the same in both modes, and it is the template's own: its `allowing
unbounded overdraft` / `allowing overdraft up to [A n]` clauses, applied by the interpreter to
balances locked under the ledger's lock order; no other account may go below zero. In batch
mode the bulk write checks the postings once more with those same clauses, read from the
template itself (`FlowBook.overdraft`) for each run's variables: there is no second list.

A reference already in the ledger is not run again (single mode: the replay rules of
`transaction_post`; batch mode: marked `already_posted`).
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

from django.db import connection

from ledger import lock_objects
from ledger.domain import PostingInput, TxInput
from ledger.models import Transaction
from ledger.numscript import NumscriptError, Program, parse, run
from ledger.numscript.ast import (
    AccountLit,
    Expr,
    MonetaryLit,
    NumberLit,
    SendStmt,
    Source,
    SrcAllotment,
    SrcCapped,
    SrcInorder,
    SrcOneof,
    SrcOverdraft,
    VarRef,
)
from ledger.services.posting import transaction_post, transactions_post_bulk
from ledger.services.scripts import ledger_asset, script_error
from ledger.services.storing import PostResult

__all__ = [
    "FlowBatch",
    "FlowBook",
    "FlowRun",
    "PreparedFlow",
    "flow_post",
    "flows_post",
    "flows_prepare",
    "monetary",
]


def monetary(asset: str, amount: int) -> str:
    """A Numscript monetary variable: ("USD/2", 1234) -> "USD/2 1234"."""
    return f"{asset} {int(amount)}"


class FlowBook:
    """An app's folder of templates, `<name>.num`, each read and parsed once per process."""

    def __init__(self, folder: Path, names: Collection[str], *, label: str) -> None:
        self.folder = folder
        self.names = tuple(names)
        self.label = label  # "payouts": names the book in errors

    def script(self, name: str) -> str:
        """The source of template `name` (raises KeyError for an unknown flow)."""
        return self._scripts[self._known(name)]

    def program(self, name: str) -> Program:
        return self._programs[self._known(name)]

    def overdraft(self, name: str, vars: Mapping[str, str]) -> dict[str, int | None]:
        """What template `name` lets each source overdraw, by its own `allowing ... overdraft`
        clauses, for these variables: {address: bound} (None: unbounded). `world` is always
        unbounded and not listed. Raises ValueError for a clause whose account or bound is
        not known before running (read from metadata, computed): such a template can only
        run in single mode."""
        found: dict[str, int | None] = {}
        for clause in self._overdraft_clauses[self._known(name)]:
            address = _static_account(clause.address, vars)
            if address == "world":
                continue
            bound = None if clause.bound is None else _static_amount(clause.bound, vars)
            if address in found and (found[address] is None or bound is None):
                found[address] = None
            elif address in found:
                found[address] = max(found[address] or 0, bound or 0)
            else:
                found[address] = bound
        return found

    def _known(self, name: str) -> str:
        if name not in self.names:
            raise KeyError(f"unknown {self.label} flow {name!r}")
        return name

    @cached_property
    def _scripts(self) -> dict[str, str]:
        return {name: (self.folder / f"{name}.num").read_text() for name in self.names}

    @cached_property
    def _programs(self) -> dict[str, Program]:
        return {name: parse(source) for name, source in self._scripts.items()}

    @cached_property
    def _overdraft_clauses(self) -> dict[str, list[SrcOverdraft]]:
        return {
            name: [
                clause
                for statement in program.statements
                if isinstance(statement, SendStmt)
                for clause in _clauses(statement.source)
            ]
            for name, program in self._programs.items()
        }


def _clauses(source: Source) -> list[SrcOverdraft]:
    """The overdraft clauses of a source tree, in the order written."""
    if isinstance(source, SrcOverdraft):
        return [source]
    if isinstance(source, SrcInorder | SrcOneof):
        return [c for s in source.sources for c in _clauses(s)]
    if isinstance(source, SrcCapped):
        return _clauses(source.source)
    if isinstance(source, SrcAllotment):
        return [c for item in source.items for c in _clauses(item.source)]
    return []


def _var(name: str, vars: Mapping[str, str]) -> str:
    if name not in vars:
        raise ValueError(f"${name} is not a variable given to the flow")
    return vars[name]


def _static_account(expr: Expr, vars: Mapping[str, str]) -> str:
    if isinstance(expr, AccountLit):
        if expr.value is not None:
            return str(expr.value)
        return ":".join(p if isinstance(p, str) else _var(p.name, vars) for p in expr.parts)
    if isinstance(expr, VarRef):
        return _var(expr.name, vars)
    raise ValueError(f"the overdraft clause at {expr.span} names an account known only when run")


def _static_amount(expr: Expr, vars: Mapping[str, str]) -> int:
    if isinstance(expr, MonetaryLit) and isinstance(expr.amount, NumberLit):
        return expr.amount.value
    if isinstance(expr, VarRef):
        return int(_var(expr.name, vars).split(" ")[-1])
    raise ValueError(f"the overdraft bound at {expr.span} is known only when run")


# --- single-transaction mode ---------------------------------------------------------------


def flow_post(
    book: FlowBook,
    name: str,
    *,
    vars: Mapping[str, str],
    reference: str | None,
    metadata: Mapping[str, Any] | None = None,
    flow: str | None = None,
    dry_run: bool = False,
) -> PostResult:
    """Run template `name` as one ledger transaction; `flow` (default: the name) is added to
    its metadata. Idempotent on `reference`. Raises the ledger's errors (InsufficientFunds,
    ReferenceConflict, ScriptError...)."""
    return transaction_post(
        script=book.script(name),
        vars=dict(vars),
        reference=reference,
        metadata={**(metadata or {}), "flow": flow or name},
        dry_run=dry_run,
    )


# --- batch mode ----------------------------------------------------------------------------


@dataclass(frozen=True)
class FlowRun:
    name: str
    vars: Mapping[str, str]
    reference: str
    metadata: Mapping[str, Any] = field(default_factory=dict)


@dataclass
class PreparedFlow:
    run: FlowRun
    postings: list[PostingInput]
    metadata: dict[str, Any]
    already_posted: bool = False  # the reference exists: nothing to post
    transaction_id: int | None = None
    # What the template's clauses let each source overdraw, for the bulk write's check.
    overdraft: dict[str, int | None] = field(default_factory=dict)

    def amount_to(self, destination: str) -> int:
        return sum(p.amount for p in self.postings if p.destination == destination)


@dataclass(frozen=True)
class FlowBatch:
    """How a book's templates run in batch mode, per template name:
    `locked(vars)`: the (account, asset) balances it reads, locked before it runs (the
    sources its clauses let overdraw without bound need not be); `flow`: the `flow` metadata
    value. What each may overdraw is the template's own clauses (`FlowBook.overdraft`)."""

    book: FlowBook
    locked: Mapping[str, Callable[[Mapping[str, str]], Iterable[tuple[str, str]]]]
    flow: Mapping[str, str] = field(default_factory=dict)


class _LockedBalances:
    """The interpreter's store over balances locked beforehand. Balances not locked are
    answered as 0 (only unbounded-overdraft sources are left unlocked, and the interpreter
    never needs their value); `apply` keeps the batch sequential."""

    def __init__(self, balances: dict[tuple[str, str], int]) -> None:
        self.balances = balances

    def get_balances(
        self, query: Mapping[str, Collection[tuple[str, str]]]
    ) -> dict[str, dict[tuple[str, str], int]]:
        return {
            account: {
                (asset, color): self.balances.get((account, ledger_asset(asset, color)), 0)
                for asset, color in keys
            }
            for account, keys in query.items()
        }

    def get_account_metadata(self, accounts: Collection[str]) -> dict[str, dict[str, str]]:
        return {}

    def apply(self, postings: Sequence[PostingInput]) -> None:
        for p in postings:
            for account, sign in ((p.source, -1), (p.destination, 1)):
                key = (account, p.asset)
                if key in self.balances:
                    self.balances[key] += sign * p.amount


def flows_prepare(batch: FlowBatch, runs: Sequence[FlowRun]) -> list[PreparedFlow]:
    """Lock what the runs read and compute their postings (nothing is written yet).

    Must run inside the transaction that will post them (the locks are held until commit).
    Raises InsufficientFunds / ScriptError."""
    if not connection.in_atomic_block:
        raise RuntimeError("flows_prepare needs an open transaction")
    if not runs:
        return []
    posted = dict(
        Transaction.objects.filter(reference__in=[r.reference for r in runs]).values_list(
            "reference", "id"
        )
    )
    keys = {key for r in runs if r.reference not in posted for key in batch.locked[r.name](r.vars)}
    store = _LockedBalances(lock_objects.balances_lock(keys=keys) if keys else {})
    prepared = []
    for r in runs:
        metadata = {**r.metadata, "flow": batch.flow.get(r.name, r.name)}
        if r.reference in posted:
            prepared.append(PreparedFlow(r, [], metadata, True, posted[r.reference]))
            continue
        try:
            result = run(batch.book.program(r.name), vars=dict(r.vars), store=store)
        except NumscriptError as exc:
            raise script_error(
                exc, context=f"{batch.book.label} flow {r.name}", extra={"reference": r.reference}
            ) from None
        postings = [
            PostingInput(p.source, p.destination, ledger_asset(p.asset, p.color), p.amount)
            for p in result.postings
            if p.amount > 0
        ]
        store.apply(postings)
        metadata.update(result.tx_meta)
        prepared.append(
            PreparedFlow(r, postings, metadata, overdraft=batch.book.overdraft(r.name, r.vars))
        )
    return prepared


def flows_post(batch: FlowBatch, prepared: Sequence[PreparedFlow]) -> list[PreparedFlow]:
    """Store the prepared flows that have postings, in one ledger call (all or nothing).
    Sets `transaction_id` on each; returns the list."""
    todo = [p for p in prepared if p.postings and not p.already_posted]
    if todo:
        results = transactions_post_bulk(
            items=[
                TxInput(
                    postings=p.postings,
                    reference=p.run.reference,
                    metadata=p.metadata,
                    overdraft=p.overdraft,
                )
                for p in todo
            ],
            atomic=True,
        )
        for item, outcome in zip(todo, results, strict=True):
            assert outcome.result is not None
            item.transaction_id = outcome.result.transaction.pk
    return list(prepared)
