"""The Stripe side of a payout: create its one transfer, or find it, or reverse it. No database
writes here, and never called inside a transaction (the gateway refuses it in tests).

Outcomes of a create, and what the caller records:
- created:  Stripe answered with the transfer (or a lookup found it): -> submitted.
- refused:  Stripe definitively refused (a 4xx other than an idempotency conflict), and a
            lookup confirms no transfer exists: -> failed (nothing left our balance).
- unknown:  timeout, 5xx, 409 "key in use", rate limit, or any unexpected error, and the lookup
            did not find the transfer: stay in submitting; retried later by LOOKING UP FIRST,
            then with the SAME key and parameters (Stripe replays the first answer)
            (`payouts.services.driving.step_resolve`).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any, Literal

from payouts.models import Payout
from payouts.transitions import reversal_idempotency_key, transfer_group
from stripe_gateway.client import get_gateway, to_stripe_amount
from stripe_gateway.errors import (
    AssetNotSupported,
    InvalidRequest,
    PaymentProviderError,
)

logger = logging.getLogger(__name__)

# Stripe refusals that are the platform's problem (funds), not the payee's: no automatic hold.
PLATFORM_SIDE_CODES = frozenset({"balance_insufficient", "insufficient_funds"})


@dataclass
class Outcome:
    payout_id: Any
    kind: Literal["created", "refused", "unknown", "absent"]  # absent: a lookup found none
    transfer: dict[str, Any] | None = None
    error: str = ""
    hold_payee: bool = False  # a refusal that will recur for this payee (bad account...)
    attention: bool = False  # something a human must look at (mismatch, duplicates)
    extra: dict[str, Any] = field(default_factory=dict)


def transfer_params(payout: Payout) -> dict[str, Any]:
    """The create parameters, a pure function of the (immutable) payout row: a retry with the
    same key sends byte-identical parameters, as Stripe's idempotency layer requires."""
    return {
        "amount": payout.amount,
        "asset": payout.asset,
        "destination": payout.destination,
        "idempotency_key": payout.idempotency_key,
        "transfer_group": transfer_group(str(payout.pk)),
        "metadata": {
            "payout_id": str(payout.pk),
            "payee": payout.payee_address,
            "payout_account": payout.account,
        },
    }


def transfer_mismatch(payout: Payout, transfer: dict[str, Any]) -> str:
    """Why `transfer` cannot be this payout's transfer ("" when it matches)."""
    amount, currency = to_stripe_amount(payout.amount, payout.asset)
    problems = []
    if transfer.get("amount") != amount:
        problems.append(f"amount {transfer.get('amount')} != {amount}")
    if (transfer.get("currency") or "").lower() != currency:
        problems.append(f"currency {transfer.get('currency')} != {currency}")
    if transfer.get("destination") != payout.destination:
        problems.append(f"destination {transfer.get('destination')} != {payout.destination}")
    if (transfer.get("metadata") or {}).get("payout_id") != str(payout.pk):
        problems.append("metadata.payout_id differs")
    if not str(transfer.get("id", "")).startswith("tr_"):
        problems.append("not a tr_ id")
    return "; ".join(problems)


def transfer_lookup(payout: Payout) -> Outcome | None:
    """Find the payout's transfer at Stripe by transfer group + metadata. None: not there.
    Raises PaymentProviderError when the lookup itself fails."""
    found = get_gateway().transfers_find(
        transfer_group=transfer_group(str(payout.pk)),
        metadata_key="payout_id",
        metadata_value=str(payout.pk),
    )
    if not found:
        return None
    if len(found) > 1:
        # I7 says this cannot happen (one key, one group); if it does, a human decides.
        ids = [t.get("id") for t in found]
        logger.error("payout %s has %d transfers at Stripe: %s", payout.pk, len(found), ids)
        return Outcome(
            payout.pk,
            "unknown",
            error=f"{len(found)} transfers found for this payout: {ids}",
            attention=True,
        )
    return _checked(payout, found[0])


def _checked(payout: Payout, transfer: dict[str, Any]) -> Outcome:
    problem = transfer_mismatch(payout, transfer)
    if problem:
        logger.error(
            "payout %s: transfer %s does not match: %s", payout.pk, transfer.get("id"), problem
        )
        return Outcome(
            payout.pk,
            "unknown",
            error=f"transfer {transfer.get('id')} does not match the payout: {problem}",
            attention=True,
        )
    return Outcome(payout.pk, "created", transfer=transfer)


def _lookup_or(payout: Payout, fallback: Outcome) -> Outcome:
    try:
        found = transfer_lookup(payout)
    except PaymentProviderError as exc:
        return Outcome(payout.pk, "unknown", error=f"{fallback.error}; lookup failed: {exc}")
    return found if found is not None else fallback


def transfer_create(payout: Payout) -> Outcome:
    """Create the payout's transfer with its stored key; classify what happened (see module
    doc). Never raises for a Stripe answer."""
    if not payout.idempotency_key:
        raise ValueError(f"payout {payout.pk} has no stored idempotency key")
    try:
        transfer = get_gateway().transfer_create(**transfer_params(payout))
    except AssetNotSupported as exc:
        # Refused before any call: nothing can exist at Stripe.
        return Outcome(payout.pk, "refused", error=str(exc), hold_payee=True)
    except InvalidRequest as exc:
        if exc.code == "provider_idempotency_error":
            # 409 "in use" (another attempt still in flight) or a parameter mismatch: unknown.
            return _lookup_or(payout, Outcome(payout.pk, "unknown", error=str(exc)))
        refused = Outcome(
            payout.pk,
            "refused",
            error=f"{exc.stripe_code or exc.code}: {exc}",
            hold_payee=(exc.stripe_code or "") not in PLATFORM_SIDE_CODES,
            extra={"stripe_code": exc.stripe_code, "request_id": exc.request_id},
        )
        # A refusal of a retried key could hide an earlier success whose key Stripe pruned.
        return _lookup_or(payout, refused) if payout.attempts > 1 else refused
    except PaymentProviderError as exc:
        # OutcomeUnknown (timeout, 5xx), ProviderUnavailable, configuration: look it up.
        return _lookup_or(payout, Outcome(payout.pk, "unknown", error=f"{exc.code}: {exc}"))
    except Exception as exc:  # a bug or an unmapped network error: the call may have happened
        logger.exception("payout %s: transfer create failed unexpectedly", payout.pk)
        return _lookup_or(
            payout, Outcome(payout.pk, "unknown", error=f"{type(exc).__name__}: {exc}")
        )
    return _checked(payout, transfer)


@dataclass
class Reversal:
    """What a reversal request did: `kind` is Stripe's answer to the POST ("reversed",
    "refused", or "unknown": timeout, 5xx, 409); `transfer` is the transfer as Stripe reports
    it afterwards (None when that lookup failed): the fact the books are written from."""

    kind: Literal["reversed", "refused", "unknown"]
    reversal: dict[str, Any] | None = None
    transfer: dict[str, Any] | None = None
    error: PaymentProviderError | None = None


def transfer_reverse(payout: Payout) -> Reversal:
    """Reverse what is left of the payout's transfer (`transfer-reversal:<id>`), then look the
    transfer up. The amount is left to Stripe ("the rest") and the metadata are a function of
    the payout, so a retry sends the same parameters under the same key whatever happened in
    between. Never raises for a Stripe answer."""
    if not payout.transfer_id:
        raise ValueError(f"payout {payout.pk} has no transfer to reverse")
    gateway = get_gateway()
    outcome: Reversal
    try:
        reversal = gateway.transfer_reversal_create(
            transfer_id=payout.transfer_id,
            amount=None,
            asset=payout.asset,
            idempotency_key=reversal_idempotency_key(str(payout.pk)),
            metadata={"payout_id": str(payout.pk), "payee": payout.payee_address},
        )
        outcome = Reversal("reversed", reversal=reversal)
    except PaymentProviderError as exc:
        # A refusal may be "already fully reversed" (staff did it in the Dashboard): the
        # lookup below tells.
        kind: Literal["refused", "unknown"] = "unknown" if exc.retryable else "refused"
        logger.warning("payout %s: reversing %s: %s", payout.pk, payout.transfer_id, exc.code)
        outcome = Reversal(kind, error=exc)
    try:
        outcome.transfer = gateway.transfer_retrieve(payout.transfer_id)
    except PaymentProviderError as exc:
        logger.warning("payout %s: looking up %s: %s", payout.pk, payout.transfer_id, exc.code)
    return outcome
