"""The payouts' money flows: Numscript templates (`<name>.num`), each with its spec file
(`<name>.num.specs.json`, run by `python manage.py numscript test payouts/flows`).

| flow            | metadata `flow` | when                                          | reference                |
|-----------------|-----------------|-----------------------------------------------|--------------------------|
| reserve         | payout-reserve  | a payout is created (pending -> reserved)     | payout-reserve:<id>      |
| settle          | payout-settle   | the transfer exists (submitted -> paid)       | payout-settle:<id>       |
| return          | payout-return   | nothing was transferred (-> returned)         | payout-return:<id>       |
| return_reversed | payout-return   | the transfer was reversed (-> returned, or a  | payout-return:<id>, or   |
|                 |                 | partial reversal after paid)                  | payout-reversal:<id>:<n> |

They run in the batch mode of the ledger's flow runner (`ledger.services.flows`: lock what
every run reads in one query, interpret each against the locked balances, store all postings
with one bulk call); this module only says, per template, what it locks (what each lets
overdraw is its own `allowing ... overdraft` clauses, read by the runner).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from ledger.services import flows as runner
from ledger.services.flows import FlowBatch, FlowBook, FlowRun, PreparedFlow, monetary

__all__ = [
    "BATCH",
    "FLOWS",
    "FLOWS_DIR",
    "FlowRun",
    "PreparedFlow",
    "flow_post",
    "flow_script",
    "flows_post",
    "flows_prepare",
    "monetary",
]

FLOWS_DIR = Path(__file__).resolve().parent


def _asset_of(monetary: str) -> str:
    return monetary.split(" ", 1)[0]


BATCH = FlowBatch(
    book=FlowBook(FLOWS_DIR, ("reserve", "settle", "return", "return_reversed"), label="payouts"),
    # (account, asset) balances each template reads, locked before it runs
    locked={
        "reserve": lambda v: [(v["payee"], v["asset"])],
        "settle": lambda v: [(v["payout"], _asset_of(v["amount"]))],
        "return": lambda v: [(v["payout"], _asset_of(v["amount"]))],
        "return_reversed": lambda v: [],
    },
    flow={
        "reserve": "payout-reserve",
        "settle": "payout-settle",
        "return": "payout-return",
        "return_reversed": "payout-return",
    },
)
FLOWS = BATCH.book.names


def flow_script(name: str) -> str:
    return BATCH.book.script(name)


def flows_prepare(runs: Sequence[FlowRun]) -> list[PreparedFlow]:
    """Lock what the runs read and compute their postings, inside the caller's transaction
    (see `ledger.services.flows.flows_prepare`)."""
    return runner.flows_prepare(BATCH, runs)


def flows_post(prepared: Sequence[PreparedFlow]) -> list[PreparedFlow]:
    """Store the prepared flows in one ledger call (all or nothing)."""
    return runner.flows_post(BATCH, prepared)


def flow_post(run_: FlowRun) -> PreparedFlow:
    """One flow, prepared and posted (inside the caller's transaction)."""
    return flows_post(flows_prepare([run_]))[0]
