"""The payouts' money flows: Numscript templates (`<name>.num`), each with its spec file
(`<name>.num.specs.json`, run by `python manage.py numscript test payouts/flows`).

| flow            | metadata `flow` | when                                          | reference                |
|-----------------|-----------------|-----------------------------------------------|--------------------------|
| reserve         | payout-reserve  | a payout is created (pending -> reserved)     | payout-reserve:<id>      |
| settle          | payout-settle   | the transfer exists (submitted -> paid)       | payout-settle:<id>       |
| return          | payout-return   | nothing was transferred (-> returned)         | payout-return:<id>       |
| return_reversed | payout-return   | the transfer was reversed (-> returned, or a  | payout-return:<id>, or   |
|                 |                 | partial reversal after paid)                  | payout-reversal:<id>:<n> |

How a batch is posted (`flows_prepare` then `flows_post`, inside the caller's transaction):
the source balances each flow reads are locked first, in one query, in the ledger's global
order (`FLOWS[name].locked`); the Numscript interpreter runs each template against those
locked balances (applying each run's postings before the next, so a batch behaves like
transactions posted one after the other); the caller may drop runs (e.g. below the minimum);
the postings are stored with one bulk ledger call that checks every overdraft again. This is
what `transaction_post(script=...)` does, batched: the scheduler and the drivers post hundreds
of flows per database round trip. A reference already in the ledger is not run again.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

from django.db import connection

from ledger.errors import InsufficientFunds, ScriptError
from ledger.models import Transaction
from ledger.numscript import MissingFundsError, NumscriptError, parse, run
from ledger.services import PostingInput, TxInput, transactions_post_bulk
from ledger.services.scripts import ledger_asset
from payouts import lock_objects

FLOWS_DIR = Path(__file__).resolve().parent


def _asset_of(monetary: str) -> str:
    return monetary.split(" ", 1)[0]


@dataclass(frozen=True)
class FlowSpec:
    flow: str  # the `flow` metadata value
    # (account, asset) balances the template reads and must be locked before it runs
    locked: Callable[[Mapping[str, str]], list[tuple[str, str]]]
    # sources the template lets overdraw (its `allowing ... overdraft` clauses), for the
    # ledger's own check of the postings
    overdraft: Mapping[str, int | None] = field(default_factory=dict)


FLOWS: dict[str, FlowSpec] = {
    "reserve": FlowSpec("payout-reserve", lambda v: [(v["payee"], v["asset"])]),
    "settle": FlowSpec("payout-settle", lambda v: [(v["payout"], _asset_of(v["amount"]))]),
    "return": FlowSpec("payout-return", lambda v: [(v["payout"], _asset_of(v["amount"]))]),
    "return_reversed": FlowSpec("payout-return", lambda v: [], {"stripe:balance": None}),
}


@cache
def flow_script(name: str) -> str:
    if name not in FLOWS:
        raise KeyError(f"unknown payouts flow {name!r}")
    return (FLOWS_DIR / f"{name}.num").read_text()


def monetary(asset: str, amount: int) -> str:
    """("USD/2", 1234) -> "USD/2 1234"."""
    return f"{asset} {int(amount)}"


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

    def amount_to(self, destination: str) -> int:
        return sum(p.amount for p in self.postings if p.destination == destination)


class _LockedStore:
    """The interpreter's store over balances locked beforehand. Balances not locked are
    answered as 0 (only `allowing unbounded overdraft` sources are left unlocked, and the
    interpreter never needs their value); `apply` keeps the batch sequential."""

    def __init__(self, balances: dict[tuple[str, str], int]) -> None:
        self.balances = balances

    def get_balances(self, query: Mapping[str, Any]) -> dict[str, dict[tuple[str, str], int]]:
        answer: dict[str, dict[tuple[str, str], int]] = {}
        for account, keys in query.items():
            answer[account] = {
                (asset, color): self.balances.get((account, ledger_asset(asset, color)), 0)
                for asset, color in keys
            }
        return answer

    def get_account_metadata(self, accounts: Any) -> dict[str, dict[str, str]]:
        return {}

    def apply(self, postings: Sequence[PostingInput]) -> None:
        for p in postings:
            for account, sign in ((p.source, -1), (p.destination, 1)):
                key = (account, p.asset)
                if key in self.balances:
                    self.balances[key] += sign * p.amount


def _error(exc: NumscriptError, run_: FlowRun) -> Exception:
    if isinstance(exc, MissingFundsError):
        return InsufficientFunds(
            account=exc.account or "(several sources)",
            asset=exc.asset,
            needed=exc.needed,
            available=exc.available,
            extra={"reference": run_.reference},
        )
    return ScriptError(
        f"payouts flow {run_.name}: {type(exc).__name__}: {exc}",
        extra={"reference": run_.reference},
    )


def flows_prepare(runs: Sequence[FlowRun]) -> list[PreparedFlow]:
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
    keys = {key for r in runs if r.reference not in posted for key in FLOWS[r.name].locked(r.vars)}
    store = _LockedStore(lock_objects.ledger_balances_lock(keys=keys) if keys else {})
    prepared = []
    for r in runs:
        spec = FLOWS[r.name]
        metadata = {**r.metadata, "flow": spec.flow}
        if r.reference in posted:
            prepared.append(PreparedFlow(r, [], metadata, True, posted[r.reference]))
            continue
        try:
            result = run(parse(flow_script(r.name)), vars=dict(r.vars), store=store)
        except NumscriptError as exc:
            raise _error(exc, r) from None
        postings = [
            PostingInput(p.source, p.destination, ledger_asset(p.asset, p.color), p.amount)
            for p in result.postings
            if p.amount > 0
        ]
        store.apply(postings)
        metadata.update(result.tx_meta)
        prepared.append(PreparedFlow(r, postings, metadata))
    return prepared


def flows_post(prepared: Sequence[PreparedFlow]) -> list[PreparedFlow]:
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
                    overdraft=dict(FLOWS[p.run.name].overdraft),
                )
                for p in todo
            ],
            atomic=True,
        )
        for item, outcome in zip(todo, results, strict=True):
            assert outcome.result is not None
            item.transaction_id = outcome.result.transaction.pk
    return list(prepared)


def flow_post(run_: FlowRun) -> PreparedFlow:
    """One flow, prepared and posted (inside the caller's transaction)."""
    return flows_post(flows_prepare([run_]))[0]
