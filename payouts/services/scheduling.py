"""Creating payouts: the scheduling pass and the one-payee variant (staff retry).

A payout is created and reserved in ONE database transaction per chunk of payees: the payee
rows are locked (serializing concurrent schedulers), "nothing in flight, not held" is checked
again under that lock, the reserve flow runs against the payees' locked ledger balances (so
the amount is decided under lock and a negative balance sends nothing), payouts below the
minimum are dropped, and the payout rows (pending -> reserved, with their audit rows), the
sequence numbers and the ledger transactions commit together. The driving tasks are sent
after the commit; if that message is lost (broker down, process killed after the commit),
the sweeper finds the reserved rows.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any
from uuid import UUID

from django.db import transaction
from django.utils import timezone

from config.celery import task_send
from ledger.retry import retry_on_conflict
from payouts import conf, lock_objects, selectors
from payouts.errors import NothingToPay
from payouts.flows import FlowRun, flows_post, flows_prepare, monetary
from payouts.models import Payout, PayoutPayee, new_payout_id
from payouts.selectors import Candidate
from payouts.services import driving, states
from payouts.services.bulk import rows_insert, rows_update
from payouts.transitions import State, payout_account

logger = logging.getLogger(__name__)


@dataclass
class ScheduleResult:
    candidates: int = 0
    created: list[UUID] = field(default_factory=list)
    skipped_in_flight: int = 0
    skipped_held: int = 0
    skipped_below_minimum: int = 0
    amounts: dict[str, int] = field(default_factory=dict)  # asset -> total reserved
    chunks_sent: int = 0  # fan_out: chunks handed to the workers instead of done here
    seconds: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return {
            "candidates": self.candidates,
            "created": len(self.created),
            "skipped_in_flight": self.skipped_in_flight,
            "skipped_held": self.skipped_held,
            "skipped_below_minimum": self.skipped_below_minimum,
            "amounts": dict(self.amounts),
            "chunks_sent": self.chunks_sent,
            "seconds": round(self.seconds, 3),
        }


@dataclass
class _ChunkOutcome:
    payouts: list[Payout] = field(default_factory=list)
    in_flight: int = 0
    held: int = 0
    below_minimum: int = 0


@retry_on_conflict
def _schedule_chunk(
    chunk: Sequence[Candidate], *, min_amount: int | None, actor: str
) -> _ChunkOutcome:
    outcome = _ChunkOutcome()
    with transaction.atomic(durable=True):
        rows = lock_objects.payees_lock(
            payees=[(c.payee.kind, c.payee.id, c.payee.address) for c in chunk]
        )
        keys = [c.payee.key for c in chunk]
        busy = selectors.in_flight_keys(keys)
        held = selectors.holds_get(keys)
        todo: list[tuple[Candidate, UUID, int, str]] = []
        for candidate in chunk:
            key = candidate.payee.key
            if key in busy:
                outcome.in_flight += 1
            elif key in held:
                outcome.held += 1
            else:
                seq = rows[key].last_seq + 1
                todo.append(
                    (candidate, new_payout_id(), seq, payout_account(candidate.payee.address, seq))
                )
        runs = []
        for candidate, payout_id, _seq, account in todo:
            payee = candidate.payee
            keep = selectors.rolling_reserve(address=payee.address, asset=payee.asset)
            runs.append(
                FlowRun(
                    "reserve",
                    vars={
                        "payee": payee.address,
                        "payout": account,
                        "asset": payee.asset,
                        "keep": monetary(payee.asset, keep),
                    },
                    reference=f"payout-reserve:{payout_id}",
                    metadata={"payout_id": str(payout_id), "payee": payee.address},
                )
            )
        prepared = flows_prepare(runs)

        now = timezone.now()
        payouts: list[Payout] = []
        kept = []
        for (candidate, payout_id, seq, account), flow in zip(todo, prepared, strict=True):
            payee = candidate.payee
            amount = flow.amount_to(account)
            floor = conf.min_amount(payee.asset) if min_amount is None else max(1, min_amount)
            if amount < floor:
                outcome.below_minimum += 1
                continue
            kept.append(flow)
            payouts.append(
                Payout(
                    id=payout_id,
                    payee_kind=payee.kind,
                    payee_id=payee.id,
                    seq=seq,
                    payee_address=payee.address,
                    account=account,
                    destination=payee.destination,
                    asset=payee.asset,
                    amount=amount,
                    state=State.PENDING,
                    created_at=now,
                    state_changed_at=now,
                )
            )
            rows[payee.key].last_seq = seq
        if not payouts:
            return outcome
        rows_insert(Payout, payouts)
        states.created(payouts, why="scheduled", actor=actor)
        rows_update(PayoutPayee, [rows[(p.payee_kind, p.payee_id)] for p in payouts], ["last_seq"])
        flows_post(kept)
        states.transitions_many(
            payouts,
            State.RESERVED,
            why={
                p.pk: f"reserved {p.amount} {p.asset} from {p.payee_address} to {p.account}"
                for p in payouts
            },
            actor=actor,
            data={
                p.pk: {"ledger_transaction": f.transaction_id}
                for p, f in zip(payouts, kept, strict=True)
            },
        )
        outcome.payouts = payouts
    return outcome


def payouts_schedule(
    *,
    kinds: Sequence[str] | None = None,
    payee_ids: Sequence[tuple[str, int]] | None = None,
    min_amount: int | None = None,
    chunk_size: int | None = None,
    actor: str = "scheduler",
    drive: bool = True,
    fan_out: bool = False,
    progress: Callable[[int, int], None] | None = None,
) -> ScheduleResult:
    """One scheduling pass: a payout for every payee with an available balance of at least
    the minimum (less the rolling reserve), not held, with none in flight. Each chunk commits
    on its own; its payouts are handed to the driving tasks when `drive` (else the sweeper or
    a caller drives them). `progress(done, created)` is called after each chunk.

    `fan_out`: send each chunk to the workers as a task (`payouts_schedule_chunk`) instead of
    creating it here, so every worker reserves and drives in parallel (the beat's pass does).
    Two workers on overlapping chunks are safe: the payee lock and "one in flight" decide."""
    started = time.perf_counter()
    result = ScheduleResult()
    candidates = selectors.candidates_list(kinds=kinds, payee_ids=payee_ids, min_amount=min_amount)
    result.candidates = len(candidates)
    size = max(1, int(chunk_size or conf.get("PAYOUTS_SCHEDULE_CHUNK")))
    for start in range(0, len(candidates), size):
        chunk = candidates[start : start + size]
        if fan_out:
            _send_chunk([c.payee.key for c in chunk], min_amount)
            result.chunks_sent += 1
            continue
        outcome = _schedule_chunk(chunk, min_amount=min_amount, actor=actor)
        ids = [p.pk for p in outcome.payouts]
        result.created += ids
        result.skipped_in_flight += outcome.in_flight
        result.skipped_held += outcome.held
        result.skipped_below_minimum += outcome.below_minimum
        for p in outcome.payouts:
            result.amounts[p.asset] = result.amounts.get(p.asset, 0) + p.amount
        if drive and ids:
            driving.payouts_enqueue(ids)
        if progress is not None:
            progress(len(chunk), len(ids))
    result.seconds = time.perf_counter() - started
    if result.created:
        logger.info("payouts: scheduled %d payout(s) %s", len(result.created), result.amounts)
    return result


def _send_chunk(keys: list[tuple[str, int]], min_amount: int | None) -> None:
    task_send(
        "payouts.tasks.payouts_schedule_chunk",
        [list(k) for k in keys],
        min_amount,
        queue=conf.get("PAYOUTS_QUEUE"),
    )


def payout_create(
    *,
    kind: str,
    payee_id: int,
    actor: str,
    min_amount: int | None = None,
    drive: bool = True,
) -> Payout:
    """Create (and reserve) one payout for one payee now. Raises PayeeNotFound, or
    NothingToPay (held, not onboarded, one in flight, below the minimum, nothing owed)."""
    payee = selectors.payee_get(kind=kind, payee_id=payee_id)
    if not payee.destination:
        raise NothingToPay(
            f"{kind} {payee_id} has no Stripe connected account yet.", code="payee_not_onboarded"
        )
    outcome = _schedule_chunk(
        [Candidate(payee=payee, balance=0)], min_amount=min_amount, actor=actor
    )
    if outcome.in_flight:
        raise NothingToPay(
            f"{kind} {payee_id} already has a payout in flight.", code="payout_in_flight"
        )
    if outcome.held:
        raise NothingToPay(f"{kind} {payee_id} is on hold: release it first.", code="payee_on_hold")
    if not outcome.payouts:
        raise NothingToPay(
            f"{kind} {payee_id} has nothing to pay (below the minimum, or a negative balance).",
            code="nothing_to_pay",
        )
    payout = outcome.payouts[0]
    if drive:
        driving.payouts_enqueue([payout.pk])
    return payout
