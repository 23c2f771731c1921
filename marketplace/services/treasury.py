"""The platform's own money: capital into the bank account, and top-ups of the Stripe
balance from the bank to cover losses (`topup:<tu_id>`, written when Stripe confirms: from
the create call's answer or the `topup.succeeded` webhook, whichever comes first; both write
the same transaction, so the second is a replay)."""

from __future__ import annotations

import re
from typing import Any

from django.db import transaction

from audit.services import audit_record
from ledger.retry import retry_on_conflict
from ledger.services import PostResult
from marketplace.flows import flow_post, monetary
from marketplace.models import Topup
from marketplace.services.common import amount_validate
from marketplace.services.errors import InvalidInput
from marketplace.services.locks import topup_lock
from stripe_gateway.client import from_stripe_amount, get_gateway
from stripe_gateway.errors import PaymentProviderError


def capital_add(*, amount: int, key: str, asset: str = "USD/2") -> PostResult:
    """Owners' capital into bank:platform (`capital:<key>`; the same key is a replay)."""
    amount_validate(amount, field="amount")
    if not isinstance(key, str) or not re.match(r"^[A-Za-z0-9_-]{1,64}$", key):
        raise InvalidInput("key must be 1-64 letters, digits, '_' or '-'.")
    return flow_post(
        "capital", vars={"amount": monetary(asset, amount)}, reference=f"capital:{key}"
    )


def topup_create(
    *, amount: int, asset: str = "USD/2", description: str = "", requested_by: Any = None
) -> Topup:
    """Record the top-up, commit, create it at Stripe (idempotency key `topup:<id>`), and
    book it if Stripe says it succeeded. Raises InvalidInput, PaymentProviderError."""
    amount_validate(amount, field="amount")
    with transaction.atomic(durable=True):
        topup = Topup.objects.create(
            amount=amount,
            asset=asset,
            description=description[:255],
            requested_by=requested_by if getattr(requested_by, "pk", None) else None,
        )
        audit_record(
            actor=requested_by,
            action="topup.create",
            obj=topup,
            amount=amount,
            asset=asset,
            data={"description": description[:255]},
        )
    try:
        stripe_topup = get_gateway().topup_create(
            amount=amount,
            asset=asset,
            idempotency_key=topup.idempotency_key,
            description=description or f"top-up {topup.pk}",
        )
    except PaymentProviderError as exc:
        if not exc.retryable:
            Topup.objects.filter(pk=topup.pk, status=Topup.Status.PENDING).update(
                status=Topup.Status.FAILED, failure_reason=f"{exc.code}: {exc.message}"[:500]
            )
        raise
    _topup_record(topup_id=topup.pk, stripe_topup=stripe_topup)
    topup.refresh_from_db()
    return topup


@retry_on_conflict
def _topup_record(*, topup_id: int, stripe_topup: dict[str, Any]) -> None:
    with transaction.atomic(durable=True):
        topup = topup_lock(topup_id=topup_id)
        if not topup.stripe_topup_id:
            topup.stripe_topup_id = stripe_topup["id"]
            topup.status = Topup.Status.SUBMITTED
            topup.save(update_fields=["stripe_topup_id", "status"])
        topup_book(stripe_topup=stripe_topup)


def topup_book(*, stripe_topup: dict[str, Any]) -> PostResult | None:
    """Book a succeeded top-up (inside the caller's transaction): bank:platform ->
    stripe:balance. None while it is not succeeded."""
    if stripe_topup.get("status") != "succeeded":
        return None
    amount, asset = from_stripe_amount(stripe_topup["amount"], stripe_topup["currency"])
    txn = stripe_topup.get("balance_transaction")
    txn_id = txn.get("id") if isinstance(txn, dict) else txn
    metadata = {"stripe_object": stripe_topup["id"]}
    if txn_id:
        metadata["stripe_balance_transaction"] = str(txn_id)
    result = flow_post(
        "topup",
        vars={"amount": monetary(asset, amount)},
        reference=f"topup:{stripe_topup['id']}",
        metadata=metadata,
    )
    Topup.objects.filter(stripe_topup_id=stripe_topup["id"]).exclude(
        status=Topup.Status.SUCCEEDED
    ).update(status=Topup.Status.SUCCEEDED)
    return result
