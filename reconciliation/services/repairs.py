"""Applying the safe repairs a run offers. Every repair is idempotent:

- `book_fee`: `platform:stripe_fees -> stripe:balance` under reference `stripe-fee:<txn>` (the
  expense account may go negative: unbounded overdraft on it). Posting it again is a replay.
- `replay_event`: `stripe_gateway.services.event_replay` (fetches an event the inbox
  never received; handlers are idempotent on the Stripe object).
- `revert_duplicates`: `ledger.services.transaction_revert` of each duplicate under reference
  `reconciliation-revert:<id>`; a transaction is reverted at most once (database constraint).

Each repair runs with no transaction open (a replay may call Stripe) and then records its
outcome on the item. If the process dies in between, applying again replays the same
references, so nothing is booked twice.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from audit.services import audit_record
from config.errors import ApplicationError
from ledger.domain import PostingInput, TxInput
from ledger.errors import AlreadyReverted
from ledger.services import transaction_post, transaction_revert, transactions_post_bulk
from reconciliation.matching import (
    FLOW_FEE,
    FLOW_REVERT,
    META_FLOW,
    META_OBJECT,
    META_TXN,
    STRIPE_BALANCE,
    STRIPE_FEES,
)
from reconciliation.models import ReconciliationItem, ReconciliationRun
from reconciliation.selectors import open_problems_count

logger = logging.getLogger(__name__)

Item = ReconciliationItem
SAFE_ACTIONS = ("book_fee", "replay_event", "revert_duplicates")
CHUNK = 500


@dataclass
class RepairReport:
    applied: int = 0
    failed: int = 0
    notes: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {"applied": self.applied, "failed": self.failed}


def fee_book(
    *, stripe_object: str, balance_transaction: str, asset: str, amount: int, timestamp: datetime
) -> int:
    """Book a Stripe fee; returns the ledger transaction id (the original one on a replay)."""
    result = transaction_post(
        postings=[PostingInput(STRIPE_FEES, STRIPE_BALANCE, asset, amount)],
        reference=f"stripe-fee:{balance_transaction}",
        metadata={
            META_OBJECT: stripe_object,
            META_TXN: balance_transaction,
            META_FLOW: FLOW_FEE,
        },
        timestamp=timestamp,
        overdraft={STRIPE_FEES: None},
    )
    return int(result.transaction.pk)


def _apply(item: ReconciliationItem) -> str:
    """Apply one item's repair; returns a note, raises ApplicationError on failure."""
    repair = item.repair or {}
    action = repair.get("action")
    if action == "book_fee":
        tx_id = fee_book(
            stripe_object=repair["stripe_object"],
            balance_transaction=repair["balance_transaction"],
            asset=repair["asset"],
            amount=int(repair["amount"]),
            timestamp=datetime.fromisoformat(repair["timestamp"]),
        )
        return f"fee booked as ledger transaction {tx_id}"
    if action == "replay_event":
        from stripe_gateway.services import event_replay

        outcome = event_replay(event_id=repair["event_id"], fetch_missing=True)
        if outcome.status != "processed":
            raise ApplicationError(
                f"event {repair['event_id']} replayed: {outcome.status}"
                + (f" ({outcome.error})" if outcome.error else ""),
                code="replay_not_processed",
            )
        return f"event {repair['event_id']} replayed and processed"
    if action == "revert_duplicates":
        reverts = []
        for tx_id in repair["transactions"]:
            try:
                result = transaction_revert(
                    transaction_id=int(tx_id),
                    reference=f"reconciliation-revert:{tx_id}",
                    metadata={
                        META_OBJECT: repair["stripe_object"],
                        META_FLOW: FLOW_REVERT,
                        "duplicate_of": str(repair["original"]),
                    },
                    # The mirror of Stripe and the fee expense may go negative (they do by
                    # design); every other account the revert takes from is still checked.
                    overdraft={STRIPE_BALANCE: None, STRIPE_FEES: None},
                )
                reverts.append(str(result.transaction.pk))
            except AlreadyReverted:
                reverts.append(f"({tx_id} already reverted)")
        return f"duplicates reverted by ledger transaction(s) {', '.join(reverts)}"
    raise ApplicationError(f"no safe repair for action {action!r}", code="repair_unknown")


def repairs_apply(
    *,
    items: Iterable[ReconciliationItem],
    actions: Iterable[str] = SAFE_ACTIONS,
) -> RepairReport:
    """Apply the pending safe repairs among `items` whose action is in `actions`."""
    wanted = set(actions)
    report = RepairReport()
    for item in items:
        if not item.safe or item.repair_status != Item.RepairStatus.PENDING:
            continue
        if (item.repair or {}).get("action") not in wanted:
            continue
        try:
            note = _apply(item)
        except ApplicationError as exc:
            item.repair_status = Item.RepairStatus.FAILED
            item.repair_note = f"{exc.code}: {exc.message}"[:2000]
            report.failed += 1
            logger.warning("reconciliation: repair of %s failed: %s", item.key, exc.message)
        else:
            item.repair_status = Item.RepairStatus.APPLIED
            item.repair_note = note
            report.applied += 1
        item.save(update_fields=["repair_status", "repair_note"])
        report.notes.append(f"{item.key}: {item.repair_note}")
    return report


def _pending(run: ReconciliationRun, actions: Iterable[str]) -> Iterator[list[ReconciliationItem]]:
    """The run's pending safe repairs with one of `actions`, in id order, 500 at a time."""
    last = 0
    while True:
        batch = list(
            Item.objects.filter(
                run=run,
                id__gt=last,
                safe=True,
                repair_status=Item.RepairStatus.PENDING,
                repair__action__in=list(actions),
            ).order_by("id")[:CHUNK]
        )
        if not batch:
            return
        last = batch[-1].pk
        yield batch


def run_repairs_apply(
    *, run: ReconciliationRun, actions: Iterable[str] = SAFE_ACTIONS, actor: Any = None
) -> RepairReport:
    """Apply every pending safe repair of a run (staff's one command / admin action). Each
    repair is its own idempotent ledger write; one audit row records who applied them and
    what came of it."""
    actions = tuple(actions)
    report = RepairReport()
    if "book_fee" in actions:
        fees = fees_book(run=run)
        report.applied += fees.applied
        report.failed += fees.failed
    others = tuple(a for a in actions if a != "book_fee")
    for batch in _pending(run, others):
        done = repairs_apply(items=batch, actions=others)
        report.applied += done.applied
        report.failed += done.failed
        report.notes += done.notes
    repairs = dict(run.repairs or {})
    repairs["applied"] = int(repairs.get("applied", 0)) + report.applied
    repairs["failed"] = int(repairs.get("failed", 0)) + report.failed
    run.repairs = repairs
    run.problems = open_problems_count(run=run)
    run.save(update_fields=["repairs", "problems"])
    if report.applied or report.failed:
        audit_record(
            actor=actor,
            action="reconciliation.repairs",
            obj=run,
            data={
                "actions": list(actions),
                "applied": report.applied,
                "failed": report.failed,
                "notes": report.notes[:50],
            },
        )
    return report


def fees_book(*, run: ReconciliationRun) -> RepairReport:
    """Book every pending `book_fee` repair of the run, 500 per bulk ledger call. Each fee
    is its own ledger transaction (idempotent on `stripe-fee:<txn>`); one that fails (e.g. a
    reference already used with another amount) fails alone."""
    report = RepairReport()
    for batch in _pending(run, ("book_fee",)):
        inputs = []
        for item in batch:
            repair = item.repair or {}
            inputs.append(
                TxInput(
                    postings=[
                        PostingInput(
                            STRIPE_FEES, STRIPE_BALANCE, repair["asset"], int(repair["amount"])
                        )
                    ],
                    reference=f"stripe-fee:{repair['balance_transaction']}",
                    metadata={
                        META_OBJECT: repair["stripe_object"],
                        META_TXN: repair["balance_transaction"],
                        META_FLOW: FLOW_FEE,
                    },
                    timestamp=datetime.fromisoformat(repair["timestamp"]),
                    overdraft={STRIPE_FEES: None},
                )
            )
        results = transactions_post_bulk(items=inputs, atomic=False)
        for item, result in zip(batch, results, strict=True):
            if result.ok and result.result is not None:
                item.repair_status = Item.RepairStatus.APPLIED
                replay = " (already booked)" if result.result.replayed else ""
                item.repair_note = (
                    f"fee booked as ledger transaction {result.result.transaction.pk}{replay}"
                )
                report.applied += 1
            else:
                error = result.error
                item.repair_status = Item.RepairStatus.FAILED
                item.repair_note = (f"{error.code}: {error.message}" if error else "failed")[:2000]
                report.failed += 1
        Item.objects.bulk_update(batch, ["repair_status", "repair_note"])
    return report
