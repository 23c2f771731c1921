"""Giving money back to the payee, and settling: ledger flow + transition, in the caller's
transaction (rows already locked in the global order: payee rows, payout rows)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from payouts.flows import FlowRun, flows_post, flows_prepare, monetary
from payouts.models import Payout
from payouts.services import states
from payouts.transitions import State


def settle_runs(payouts: Sequence[Payout]) -> list[FlowRun]:
    return [
        FlowRun(
            "settle",
            vars={"payout": p.account, "amount": monetary(p.asset, p.amount)},
            reference=f"payout-settle:{p.pk}",
            metadata={"stripe_object": p.transfer_id, "payout_id": str(p.pk)},
        )
        for p in payouts
    ]


def settle_post(payouts: Sequence[Payout]) -> dict[Any, int | None]:
    """Post (or find) the settle transactions: payout account -> stripe:balance."""
    flows = flows_post(flows_prepare(settle_runs(payouts)))
    return {p.pk: f.transaction_id for p, f in zip(payouts, flows, strict=True)}


def settle(payouts: Sequence[Payout], *, actor: str) -> list[Payout]:
    """submitted -> paid, with the settle flow."""
    if not payouts:
        return []
    txs = settle_post(payouts)
    return states.transitions_many(
        payouts,
        State.PAID,
        why={p.pk: f"settled: transfer {p.transfer_id} left stripe:balance" for p in payouts},
        actor=actor,
        data={p.pk: {"ledger_transaction": txs[p.pk], "transfer": p.transfer_id} for p in payouts},
    )


def give_back(
    payouts: Sequence[Payout], *, why: str | Mapping[Any, str], actor: str
) -> list[Payout]:
    """reserved/failed (nothing transferred) -> returned: payout account -> payee."""
    if not payouts:
        return []
    for p in payouts:
        if p.transfer_id:
            raise ValueError(f"payout {p.pk} has a transfer: use the reversal path")
    flows = flows_post(
        flows_prepare(
            [
                FlowRun(
                    "return",
                    vars={
                        "payout": p.account,
                        "payee": p.payee_address,
                        "amount": monetary(p.asset, p.amount),
                    },
                    reference=f"payout-return:{p.pk}",
                    metadata={"payout_id": str(p.pk)},
                )
                for p in payouts
            ]
        )
    )
    return states.transitions_many(
        payouts,
        State.RETURNED,
        why=why,
        actor=actor,
        data={
            p.pk: {"ledger_transaction": f.transaction_id}
            for p, f in zip(payouts, flows, strict=True)
        },
    )


def reversal_return(
    payout: Payout, *, amount: int, reference: str, stripe_object: str
) -> int | None:
    """Post money that came back through a transfer reversal: stripe:balance -> payee."""
    flow = flows_post(
        flows_prepare(
            [
                FlowRun(
                    "return_reversed",
                    vars={"payee": payout.payee_address, "amount": monetary(payout.asset, amount)},
                    reference=reference,
                    metadata={"stripe_object": stripe_object, "payout_id": str(payout.pk)},
                )
            ]
        )
    )[0]
    return flow.transaction_id
