"""Applying Stripe's facts about our transfers and the connected accounts' payouts.

Called by the webhook handlers (`payouts.handlers`) inside the inbox's transaction: DB writes
only, idempotent (keyed on the payout's state and its `amount_reversed`), order-independent
(a `transfer.reversed` before we recorded the transfer adopts it first). The Stripe object is
re-fetched by the handler's `prepare` step; the payload is only a hint.
"""

from __future__ import annotations

import logging
import uuid
from typing import Any

from payouts import lock_objects, selectors
from payouts.models import Payout
from payouts.services import returns, states
from payouts.services.staff import hold_apply
from payouts.services.transfers import transfer_mismatch
from payouts.transitions import State

logger = logging.getLogger(__name__)


def _lock(payout: Payout) -> Payout:
    lock_objects.payees_lock(payees=[(payout.payee_kind, payout.payee_id, payout.payee_address)])
    return lock_objects.payout_lock(payout_id=payout.pk)


def _adopt(payout: Payout, transfer: dict[str, Any], *, actor: str) -> str | None:
    """A payout still in `submitting` learns its transfer from Stripe: -> submitted.
    Returns why it cannot (a mismatch, a different transfer already recorded), else None."""
    if payout.transfer_id and payout.transfer_id != transfer["id"]:
        logger.error(
            "payout %s records %s but Stripe reports %s for it",
            payout.pk,
            payout.transfer_id,
            transfer["id"],
        )
        payout.needs_attention = True
        payout.save(update_fields=["needs_attention"])
        return f"payout records {payout.transfer_id}, Stripe reports {transfer['id']}"
    if payout.state != State.SUBMITTING:
        return None
    problem = transfer_mismatch(payout, transfer)
    if problem:
        logger.error(
            "payout %s: transfer %s does not match: %s", payout.pk, transfer["id"], problem
        )
        payout.needs_attention = True
        payout.save(update_fields=["needs_attention"])
        return problem
    states.transition(
        payout,
        State.SUBMITTED,
        why=f"Stripe transfer {transfer['id']} reported by webhook",
        actor=actor,
        fields={"transfer_id": transfer["id"], "last_error": ""},
    )
    return None


def transfer_created_apply(transfer: dict[str, Any], *, actor: str) -> str:
    """transfer.created: record the transfer of a payout we were not sure about (its worker
    died during or after the Stripe call, or the answer was lost), and settle it. Returns a
    note ("" when nothing applied)."""
    found = selectors.payout_by_transfer(transfer=transfer)
    if found is None:
        return "not a payout transfer"
    payout = _lock(found)
    problem = _adopt(payout, transfer, actor=actor)
    if problem:
        return f"not adopted: {problem}"
    if payout.state == State.SUBMITTED:
        returns.settle([payout], actor=actor)
        return f"payout {payout.pk} paid"
    return f"payout {payout.pk} already {payout.state}"


def _reversal_object(transfer: dict[str, Any]) -> str:
    """The newest reversal's `trr_` id (its balance transaction's source), else the `tr_` id."""
    reversals = (transfer.get("reversals") or {}).get("data") or []
    if reversals:
        newest = max(reversals, key=lambda r: (r.get("created") or 0, r.get("id") or ""))
        if str(newest.get("id", "")).startswith("trr_"):
            return str(newest["id"])
    return str(transfer["id"])


def transfer_reversed_apply(transfer: dict[str, Any], *, actor: str) -> str:
    """transfer.reversed (full or partial): give what came back to the payee.

    - not yet settled (submitting/submitted): settle first (the transfer did leave our balance:
      reconciliation matches the `tr_`), then a full reversal is failed -> returned, a partial
      one paid plus the reversed part returned;
    - paid: the reversed part goes back to the payee (a note, the state stays paid);
    - failed with a transfer (its connected account's payout failed): returned once fully
      reversed.
    Each step is keyed by `amount_reversed`, so a replay changes nothing."""
    found = selectors.payout_by_transfer(transfer=transfer)
    if found is None:
        return "not a payout transfer"
    payout = _lock(found)
    problem = _adopt(payout, transfer, actor=actor)
    if problem:
        return f"not applied: {problem}"
    target = min(int(transfer.get("amount_reversed") or 0), payout.amount)
    delta = target - payout.amount_reversed
    if delta <= 0 or payout.state in (State.RETURNED, State.PENDING, State.RESERVED):
        return f"payout {payout.pk}: nothing new reversed"
    stripe_object = _reversal_object(transfer)
    full = target >= payout.amount
    if payout.state == State.SUBMITTED:
        if full:
            returns.settle_post([payout])
            states.transition(
                payout,
                State.FAILED,
                why=f"transfer {payout.transfer_id} reversed in full ({stripe_object})",
                actor=actor,
            )
        else:
            returns.settle([payout], actor=actor)
    reference = f"payout-return:{payout.pk}" if full else f"payout-reversal:{payout.pk}:{target}"
    tx = returns.reversal_return(
        payout, amount=delta, reference=reference, stripe_object=stripe_object
    )
    payout.amount_reversed = target
    if payout.state == State.FAILED and full:
        states.transition(
            payout,
            State.RETURNED,
            why=f"reversed {delta} {payout.asset} back to {payout.payee_address}",
            actor=actor,
            data={"ledger_transaction": tx, "stripe_object": stripe_object},
            fields={"amount_reversed": target},
        )
        return f"payout {payout.pk} returned"
    payout.save(update_fields=["amount_reversed"])
    states.note(
        payout,
        why=f"partial reversal: {delta} {payout.asset} back to {payout.payee_address} "
        f"({target} of {payout.amount} reversed)",
        actor=actor,
        data={"ledger_transaction": tx, "stripe_object": stripe_object},
    )
    return f"payout {payout.pk}: {delta} returned"


def _payout_uuid(value: Any) -> uuid.UUID | None:
    """Our payout ids are UUIDs; anything else in Stripe metadata is not ours."""
    if not isinstance(value, str) or not value:
        return None
    try:
        return uuid.UUID(value)
    except ValueError:
        return None


def connected_payout_failed_apply(
    *, account: str, payout_object: dict[str, Any], event_type: str, actor: str
) -> str | None:
    """A connected account's own payout to its bank failed or was cancelled: the money sits in
    its Stripe balance, unusable. Hold the payee (further transfers would strand more money).
    If the bank payout names one of our payouts (`metadata.payout_id`) still `submitted`, that
    payout settles (the transfer did leave our balance) and fails; it returns to the payee's
    ledger account only once the transfer is reversed (staff, at Stripe), never before, or the
    payee would be paid twice. Returns None when no payee has this connected account."""
    payee = _payee_by_account(account)
    if payee is None:
        return None
    kind, payee_id = payee
    what = f"{event_type} {payout_object.get('id')}"
    failure = payout_object.get("failure_message") or payout_object.get("failure_code") or ""
    hold_apply(
        kind=kind,
        payee_id=payee_id,
        on_hold=True,
        reason=f"connected account payout failed: {what} {failure}".strip(),
        actor=actor,
    )
    ours = _payout_uuid((payout_object.get("metadata") or {}).get("payout_id"))
    if ours is None:
        # No id of ours (or somebody else's value): the hold above must still commit.
        return f"{kind} {payee_id} held ({what})"
    found = Payout.objects.filter(pk=ours, payee_kind=kind, payee_id=payee_id).first()
    if found is None:
        return f"{kind} {payee_id} held ({what}); payout {ours} unknown"
    payout = lock_objects.payout_lock(payout_id=found.pk)
    if payout.state == State.SUBMITTED:
        returns.settle_post([payout])
        states.transition(
            payout,
            State.FAILED,
            why=f"the connected account's payout failed ({what} {failure}); reverse transfer "
            f"{payout.transfer_id} to return the money",
            actor=actor,
            fields={"needs_attention": True, "last_error": f"{what} {failure}"[:2000]},
        )
    else:
        states.note(payout, why=f"connected account: {what} {failure}", actor=actor)
    return f"{kind} {payee_id} held; payout {payout.pk} {payout.state}"


def _payee_by_account(account: str) -> tuple[str, int] | None:
    from marketplace.models import Restaurant, Rider

    for kind, model in (("restaurant", Restaurant), ("rider", Rider)):
        pk = model.objects.filter(stripe_account_id=account).values_list("pk", flat=True).first()
        if pk is not None:
            return kind, pk
    return None
