"""Staff operations (API and admin call these): hold and release a payee, cancel a reserved
payout, retry a failed one. Each is one transaction taking the locks in the global order
(payee row, payout rows, ledger), writes audit rows, and refuses with a clear error what the
state machine does not allow."""

from __future__ import annotations

import logging
from typing import Any
from uuid import UUID

from django.db import transaction

from audit.services import audit_record
from ledger.retry import retry_on_conflict
from payouts import lock_objects, selectors
from payouts.errors import TransitionRefused
from payouts.models import PayeeHoldChange, Payout
from payouts.services import returns
from payouts.transitions import State

logger = logging.getLogger(__name__)


def _payee_row(kind: str, payee_id: int) -> Any:
    model = selectors.payee_model(kind)
    row = model.objects.filter(pk=payee_id).first()
    if row is None:
        selectors.payee_get(kind=kind, payee_id=payee_id)  # raises PayeeNotFound
    return row


def hold_apply(*, kind: str, payee_id: int, on_hold: bool, reason: str, actor: str) -> list[Payout]:
    """Set or clear a payee's hold inside the caller's transaction (payee row locked first);
    a hold also cancels the payee's reserved payouts. Returns the cancelled payouts."""
    from marketplace.services.parties import payee_hold_set

    row = _payee_row(kind, payee_id)
    lock_objects.payees_lock(payees=[(kind, row.pk, row.ledger_address)])
    payee_hold_set(payee=row, on_hold=on_hold)
    PayeeHoldChange.objects.create(
        payee_kind=kind, payee_id=row.pk, on_hold=on_hold, reason=reason, actor=actor[:200]
    )
    cancelled: list[Payout] = []
    if on_hold:
        reserved = Payout.objects.filter(
            payee_kind=kind, payee_id=row.pk, state=State.RESERVED
        ).values_list("id", flat=True)
        locked = lock_objects.payouts_lock(ids=list(reserved), states=[State.RESERVED])
        cancelled = returns.give_back(locked, why=f"cancelled: payee held ({reason})", actor=actor)
    audit_record(
        actor=actor,
        action="payee.hold" if on_hold else "payee.release",
        object_type=f"marketplace.{kind}",
        object_id=row.pk,
        data={"reason": reason, "cancelled": [str(p.pk) for p in cancelled]},
    )
    return cancelled


@retry_on_conflict
def _hold_set(*, kind: str, payee_id: int, on_hold: bool, reason: str, actor: str) -> list[Payout]:
    with transaction.atomic(durable=True):
        return hold_apply(kind=kind, payee_id=payee_id, on_hold=on_hold, reason=reason, actor=actor)


def payee_hold(*, kind: str, payee_id: int, reason: str, actor: str) -> list[Payout]:
    """Hold a payee's payouts: the scheduler skips it, its reserved payouts are cancelled
    (returned), and a payout already sent to Stripe runs its course. Returns the cancelled."""
    cancelled = _hold_set(kind=kind, payee_id=payee_id, on_hold=True, reason=reason, actor=actor)
    logger.info("payouts: %s %s held by %s: %s", kind, payee_id, actor, reason)
    return cancelled


def payee_release(*, kind: str, payee_id: int, reason: str, actor: str) -> None:
    """Release a hold: the next scheduling pass pays the payee again."""
    _hold_set(kind=kind, payee_id=payee_id, on_hold=False, reason=reason, actor=actor)
    logger.info("payouts: %s %s released by %s: %s", kind, payee_id, actor, reason)


@retry_on_conflict
def payout_cancel(*, payout_id: UUID | str, reason: str, actor: str) -> Payout:
    """Cancel a reserved payout (-> returned, the money back on the payee). Refused once the
    payout may have reached Stripe: then only a lookup (the driver) or a reversal decides."""
    payout = selectors.payout_get(payout_id=payout_id)
    with transaction.atomic(durable=True):
        lock_objects.payees_lock(
            payees=[(payout.payee_kind, payout.payee_id, payout.payee_address)]
        )
        payout = lock_objects.payout_lock(payout_id=payout.pk)
        if payout.state != State.RESERVED:
            raise TransitionRefused(
                f"payout {payout.pk} is {payout.state}: only a reserved payout can be cancelled"
                + (
                    " (the transfer may exist at Stripe; reverse it there if it must come back)"
                    if payout.state in (State.SUBMITTING, State.SUBMITTED, State.PAID)
                    else ""
                ),
                extra={"from_state": payout.state, "to_state": State.RETURNED},
            )
        returns.give_back([payout], why=f"cancelled by staff: {reason}", actor=actor)
        audit_record(
            actor=actor,
            action="payout.cancel",
            obj=payout,
            amount=payout.amount,
            asset=payout.asset,
            data={"reason": reason},
        )
    return payout
