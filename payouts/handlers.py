"""Stripe webhook handlers of the payouts app, registered in the marketplace's
`{event type: handler}` table when `PayoutsConfig.ready()` imports this module.

- transfer.created / transfer.reversed: re-fetch the transfer (prepare: no transaction open,
  Stripe may be called), then apply it to the payout named by `metadata.payout_id` (or owning
  the `tr_` id) inside the inbox's transaction.
- transfer.updated: description/metadata edits, nothing to apply.
- payout.failed / payout.canceled: only the connected accounts' own payouts (events carrying
  `account`) concern payouts; the platform's bank payouts are acknowledged and ignored here.
"""

from __future__ import annotations

from typing import Any

from payouts import selectors
from payouts.services import events
from payouts.transitions import State
from stripe_gateway.client import get_gateway
from stripe_gateway.registry import HandlerResult, handler_register


def _actor(event: Any) -> str:
    return f"webhook:{event.stripe_id}"


def _fetch_transfer(event: Any) -> dict[str, Any] | None:
    """The transfer as Stripe has it now (None when it is not one of ours)."""
    hint = event.data_object
    if selectors.payout_by_transfer(transfer=hint) is None:
        return None
    return get_gateway().transfer_retrieve(hint["id"])


def _fetch_transfer_if_needed(event: Any) -> dict[str, Any] | None:
    hint = event.data_object
    payout = selectors.payout_by_transfer(transfer=hint)
    if payout is None:
        return None
    if payout.transfer_id == hint.get("id") and payout.state in (State.PAID, State.RETURNED):
        return {}  # already applied: nothing to fetch
    return get_gateway().transfer_retrieve(hint["id"])


@handler_register("transfer.created", prepare=_fetch_transfer_if_needed)
def transfer_created(event: Any, transfer: dict[str, Any] | None) -> HandlerResult | None:
    if transfer is None:
        return HandlerResult.ignored("not a payout transfer")
    if not transfer:
        return HandlerResult.processed("already recorded")
    return HandlerResult.processed(events.transfer_created_apply(transfer, actor=_actor(event)))


@handler_register("transfer.reversed", prepare=_fetch_transfer)
def transfer_reversed(event: Any, transfer: dict[str, Any] | None) -> HandlerResult | None:
    if transfer is None:
        return HandlerResult.ignored("not a payout transfer")
    return HandlerResult.processed(events.transfer_reversed_apply(transfer, actor=_actor(event)))


@handler_register("transfer.updated")
def transfer_updated(event: Any) -> HandlerResult | None:
    return HandlerResult.ignored("transfer description/metadata change: nothing to apply")


def _connected_payout(event: Any) -> HandlerResult | None:
    if not event.account:
        return HandlerResult.ignored("a platform payout, not a connected account's")
    note = events.connected_payout_failed_apply(
        account=event.account,
        payout_object=event.data_object,
        event_type=event.type,
        actor=_actor(event),
    )
    if note is None:
        return HandlerResult.ignored(f"no payee has the connected account {event.account}")
    return HandlerResult.processed(note)


@handler_register("payout.failed")
def connected_payout_failed(event: Any) -> HandlerResult | None:
    return _connected_payout(event)


@handler_register("payout.canceled")
def connected_payout_canceled(event: Any) -> HandlerResult | None:
    return _connected_payout(event)
