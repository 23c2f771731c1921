"""Staff reversal of a failed payout's transfer: the money a payout sent to a connected
account that could not use it (its own bank payout failed) comes back to the payee.

    1. one transaction (payee row, then payout row locked): the payout must be `failed` with
       its transfer in place; an audit note records the request and its idempotency key
       `transfer-reversal:<payout id>`; COMMIT;
    2. no transaction open: reverse the rest of the transfer at Stripe, then look the
       transfer up (`transfers.transfer_reverse`);
    3. one transaction: apply the transfer as Stripe reports it with the `transfer.reversed`
       handler's own step (`events.transfer_reversed_apply`: `payout-return:<id>`,
       stripe:balance -> payee, failed -> returned). Keyed on `amount_reversed`, so whichever
       of this call and the webhook comes first returns the money and the other changes
       nothing.

If Stripe's answer is unknown and the lookup does not show the reversal, the payout stays
`failed` (ReversalPending): calling again sends the same key and parameters, and if the
reversal did happen its webhook returns the money.
"""

from __future__ import annotations

import logging
from typing import Any
from uuid import UUID

from django.db import transaction

from audit.services import audit_record
from ledger.retry import retry_on_conflict
from payouts import lock_objects, selectors
from payouts.errors import ReversalPending, ReversalRefused, TransitionRefused
from payouts.models import Payout
from payouts.services import events, states
from payouts.services.transfers import Reversal, transfer_reverse
from payouts.transitions import State, reversal_idempotency_key

logger = logging.getLogger(__name__)


def payout_reverse(*, payout_id: UUID | str, reason: str, actor: str) -> Payout:
    """Reverse the transfer of a failed payout whose money is still at the connected account,
    and give it back to the payee (see the module doc). Returns the payout afterwards:
    `returned`, or still `failed` when Stripe reversed it but the lookup failed (the
    `transfer.reversed` webhook then returns it).

    Raises PayoutNotFound; TransitionRefused (not failed, or nothing was transferred: retry
    it instead); ReversalRefused (Stripe refused, e.g. the connected account's balance cannot
    cover it; nothing came back); ReversalPending (Stripe's answer unknown: call again)."""
    payout = _reversal_request(payout_id=payout_id, reason=reason, actor=actor)
    outcome = transfer_reverse(payout)
    applied = _reversal_apply(outcome.transfer, actor=actor) if outcome.transfer else ""
    payout.refresh_from_db()
    if payout.state == State.RETURNED:
        logger.info(
            "payouts: payout %s reversed by %s and returned (%s)", payout.pk, actor, applied
        )
        return payout
    _outcome_note(payout_id=payout.pk, outcome=outcome, actor=actor)
    if outcome.kind == "refused":
        error = outcome.error
        raise ReversalRefused(
            f"payout {payout.pk}: Stripe refused to reverse transfer {payout.transfer_id}: "
            f"{error.message if error else 'refused'}",
            extra={
                "transfer_id": payout.transfer_id,
                "stripe_code": getattr(error, "stripe_code", None),
            },
        )
    if outcome.kind == "unknown":
        raise ReversalPending(
            f"payout {payout.pk}: Stripe's answer to the reversal of {payout.transfer_id} is "
            "unknown; try again (same idempotency key): if it happened, the transfer.reversed "
            "webhook returns the money",
            extra={"transfer_id": payout.transfer_id},
        )
    return payout


@retry_on_conflict
def _reversal_request(*, payout_id: UUID | str, reason: str, actor: str) -> Payout:
    payout = selectors.payout_get(payout_id=payout_id)
    with transaction.atomic(durable=True):
        lock_objects.payees_lock(
            payees=[(payout.payee_kind, payout.payee_id, payout.payee_address)]
        )
        payout = lock_objects.payout_lock(payout_id=payout.pk)
        if payout.state != State.FAILED:
            raise TransitionRefused(
                f"payout {payout.pk} is {payout.state}: only a failed payout whose transfer is "
                "still at the connected account can be reversed",
                extra={"state": payout.state},
            )
        if not payout.transfer_id:
            raise TransitionRefused(
                f"payout {payout.pk}: nothing was transferred, there is nothing to reverse "
                "(retry it: its money goes back to the payee)",
                extra={"state": payout.state},
            )
        key = reversal_idempotency_key(str(payout.pk))
        states.note(
            payout,
            why=f"reversal of transfer {payout.transfer_id} requested: {reason}",
            actor=actor,
            data={"idempotency_key": key, "transfer": payout.transfer_id},
        )
        audit_record(
            actor=actor,
            action="payout.reverse",
            obj=payout,
            amount=payout.amount - payout.amount_reversed,
            asset=payout.asset,
            data={"reason": reason, "transfer": payout.transfer_id},
        )
    return payout


@retry_on_conflict
def _reversal_apply(transfer: dict[str, Any], *, actor: str) -> str:
    with transaction.atomic(durable=True):
        return events.transfer_reversed_apply(transfer, actor=actor)


@retry_on_conflict
def _outcome_note(*, payout_id: Any, outcome: Reversal, actor: str) -> None:
    """The result of a reversal that did not (yet) return the money, on the audit trail."""
    if outcome.kind == "reversed":
        reversal_id = (outcome.reversal or {}).get("id")
        why = (
            f"Stripe reversed the transfer ({reversal_id}); the money returns with the "
            "transfer.reversed webhook"
        )
    elif outcome.kind == "refused":
        why = f"Stripe refused the reversal: {outcome.error}"
    else:
        why = f"Stripe's answer to the reversal is unknown: {outcome.error}"
    error = outcome.error
    data = {"stripe_code": error.stripe_code, "request_id": error.request_id} if error else {}
    with transaction.atomic(durable=True):
        payout = lock_objects.payout_lock(payout_id=payout_id)
        states.note(payout, why=why[:2000], actor=actor, data=data)
