"""Retrying a failed payout (staff): give its money back, then pay the payee anew. Above
`driving` and `scheduling`, whose steps it chains; `staff` holds the payee-level actions."""

from __future__ import annotations

from uuid import UUID

from audit.services import audit_record
from payouts import selectors
from payouts.errors import ReturnBlocked, TransitionRefused
from payouts.models import Payout
from payouts.services.driving import step_return
from payouts.services.scheduling import payout_create
from payouts.transitions import State


def payout_retry(*, payout_id: UUID | str, actor: str, drive: bool = True) -> Payout:
    """Retry a failed payout: give its money back to the payee if that has not happened yet,
    then create a new payout for the payee (with whatever it is owed now). Returns the new
    payout. Refused (ReturnBlocked) while the failed payout's transfer exists and has not been
    reversed: paying again would pay twice."""
    payout = selectors.payout_get(payout_id=payout_id)
    failed_before = payout.events.filter(to_state=State.FAILED).exists()
    if payout.state == State.FAILED:
        if payout.transfer_id and payout.amount_reversed < payout.amount:
            raise ReturnBlocked(
                f"payout {payout.pk}: transfer {payout.transfer_id} still holds "
                f"{payout.amount - payout.amount_reversed} at the connected account; reverse it "
                "first (payout_reverse: POST .../reverse/ or `manage.py payouts reverse`), which "
                "returns the money to the payee",
                extra={"transfer_id": payout.transfer_id},
            )
        step_return([payout.pk], None, actor)
        payout.refresh_from_db()
    if payout.state != State.RETURNED or not failed_before:
        raise TransitionRefused(
            f"payout {payout.pk} is {payout.state}: only a failed payout can be retried",
            extra={"state": payout.state},
        )
    retried = payout_create(
        kind=payout.payee_kind, payee_id=payout.payee_id, actor=actor, drive=drive
    )
    # The failed payout's return and the new payout are each their own transaction (the new
    # one pays whatever is owed now); the audit row names both.
    audit_record(
        actor=actor,
        action="payout.retry",
        obj=payout,
        amount=payout.amount,
        asset=payout.asset,
        data={"new_payout": str(retried.pk)},
    )
    return retried
