"""A fake Stripe gateway for unit tests of the flows: the objects Stripe would return, kept
in a dict and served by the same methods as `stripe_gateway.client.StripeGateway`. Shapes
follow tests/fixtures/stripe (only the fields the flows read)."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from typing import Any

import pytest

from stripe_gateway.client import open_atomic_depth
from stripe_gateway.errors import InvalidRequest, ProviderObjectNotFound, StripeCallInTransaction

_ids = itertools.count(1)

GATEWAY_USERS = (
    "marketplace.handlers",
    "marketplace.services.orders",
    "marketplace.services.payment_intents",
    "marketplace.services.refunds",
    "marketplace.services.parties",
    "marketplace.services.treasury",
)


def new_id(prefix: str) -> str:
    return f"{prefix}_fake{next(_ids):06d}"


# The statuses in which Stripe lets a PaymentIntent be canceled.
CANCELABLE = frozenset(
    {"requires_payment_method", "requires_confirmation", "requires_action", "requires_capture"}
)


def card_fee(amount: int) -> int:
    return (amount * 29 + 500) // 1000 + 30


class FakeGateway:
    def __init__(self) -> None:
        self.objects: dict[str, dict[str, Any]] = {}
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self.refund_error: Exception | None = None
        # Raised by the next payment_intent_cancel calls, one each, before anything changes.
        self.cancel_errors: list[Exception] = []

    def add(self, obj: dict[str, Any]) -> dict[str, Any]:
        self.objects[obj["id"]] = obj
        return obj

    def _record(self, operation: str, params: dict[str, Any]) -> None:
        """Like the real seam's guard: a call inside an open transaction is a bug."""
        if open_atomic_depth():
            raise StripeCallInTransaction(f"fake Stripe call {operation} inside a transaction")
        self.calls.append((operation, params))

    def _get(self, object_id: str) -> dict[str, Any]:
        if object_id not in self.objects:
            raise ProviderObjectNotFound(f"No such object: {object_id}", operation="retrieve")
        return dict(self.objects[object_id])

    # --- reads ---
    def charge_retrieve(self, charge_id: str, *, expand: Any = ()) -> dict[str, Any]:
        self._record("charge_retrieve", {"id": charge_id})
        return self._get(charge_id)

    def payment_intent_retrieve(self, pi_id: str, *, expand: Any = ()) -> dict[str, Any]:
        self._record("payment_intent_retrieve", {"id": pi_id})
        return self._get(pi_id)

    def refund_retrieve(self, refund_id: str) -> dict[str, Any]:
        self._record("refund_retrieve", {"id": refund_id})
        return self._get(refund_id)

    def dispute_retrieve(self, dispute_id: str) -> dict[str, Any]:
        self._record("dispute_retrieve", {"id": dispute_id})
        return self._get(dispute_id)

    def topup_retrieve(self, topup_id: str) -> dict[str, Any]:
        self._record("topup_retrieve", {"id": topup_id})
        return self._get(topup_id)

    # --- writes ---
    def payment_intent_create(self, **kwargs: Any) -> dict[str, Any]:
        self._record("payment_intent_create", kwargs)
        key = kwargs["idempotency_key"]
        for obj in self.objects.values():
            if obj.get("_key") == key:
                return dict(obj)
        return dict(
            self.add(
                payment_intent(
                    amount=kwargs["amount"],
                    metadata=kwargs["metadata"],
                    transfer_group=kwargs.get("transfer_group"),
                    status="requires_payment_method",
                    key=key,
                )
            )
        )

    def payment_intent_cancel(self, **kwargs: Any) -> dict[str, Any]:
        """Like Stripe: only a PaymentIntent that has not succeeded (nor is processing, nor
        is canceled) can be canceled; otherwise 400 `payment_intent_unexpected_state`."""
        self._record("payment_intent_cancel", kwargs)
        if self.cancel_errors:
            raise self.cancel_errors.pop(0)
        intent = self.objects.get(kwargs["payment_intent_id"])
        if intent is None:
            raise ProviderObjectNotFound(
                f"No such payment_intent: {kwargs['payment_intent_id']}",
                operation="payment_intent_cancel",
                stripe_code="resource_missing",
                provider_status=404,
            )
        if intent["status"] not in CANCELABLE:
            raise InvalidRequest(
                "You cannot cancel this PaymentIntent because it has a status of "
                f"{intent['status']}.",
                operation="payment_intent_cancel",
                stripe_code="payment_intent_unexpected_state",
                provider_status=400,
            )
        intent.update(status="canceled", cancellation_reason=kwargs.get("reason"))
        return dict(intent)

    def refund_create(self, **kwargs: Any) -> dict[str, Any]:
        self._record("refund_create", kwargs)
        if self.refund_error is not None:
            raise self.refund_error
        return dict(
            self.add(
                refund(
                    charge_id=kwargs["charge_id"],
                    amount=kwargs["amount"],
                    metadata=kwargs["metadata"],
                )
            )
        )

    def account_create(self, **kwargs: Any) -> dict[str, Any]:
        self._record("account_create", kwargs)
        return {"id": new_id("acct"), "object": "account"}

    def topup_create(self, **kwargs: Any) -> dict[str, Any]:
        self._record("topup_create", kwargs)
        return dict(self.add(topup(amount=kwargs["amount"])))

    def calls_of(self, operation: str) -> list[dict[str, Any]]:
        return [params for name, params in self.calls if name == operation]


@pytest.fixture
def fake_gateway(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeGateway]:
    gateway = FakeGateway()
    for module in GATEWAY_USERS:
        monkeypatch.setattr(f"{module}.get_gateway", lambda: gateway)
    yield gateway


# --- object builders -------------------------------------------------------------------------


def payment_intent(
    *,
    amount: int,
    metadata: dict[str, str],
    status: str = "succeeded",
    latest_charge: str | None = None,
    transfer_group: str | None = None,
    key: str | None = None,
    pi_id: str | None = None,
) -> dict[str, Any]:
    return {
        "id": pi_id or new_id("pi"),
        "object": "payment_intent",
        "amount": amount,
        "currency": "usd",
        "status": status,
        "latest_charge": latest_charge,
        "metadata": dict(metadata),
        "transfer_group": transfer_group,
        "livemode": False,
        "_key": key,
    }


def charge(
    *,
    amount: int,
    payment_intent_id: str,
    order_id: int | str,
    fee: int | None = None,
    charge_id: str | None = None,
    status: str = "succeeded",
    with_balance_transaction: bool = True,
) -> dict[str, Any]:
    fee = card_fee(amount) if fee is None else fee
    charge_id = charge_id or new_id("ch")
    return {
        "id": charge_id,
        "object": "charge",
        "amount": amount,
        "currency": "usd",
        "status": status,
        "paid": status == "succeeded",
        "payment_intent": payment_intent_id,
        "metadata": {"order_id": str(order_id)},
        "balance_transaction": {
            "id": new_id("txn"),
            "object": "balance_transaction",
            "amount": amount,
            "fee": fee,
            "net": amount - fee,
            "source": charge_id,
            "type": "charge",
            "reporting_category": "charge",
        }
        if with_balance_transaction
        else None,
        "livemode": False,
    }


def refund(
    *,
    charge_id: str,
    amount: int,
    metadata: dict[str, str] | None = None,
    status: str = "succeeded",
    refund_id: str | None = None,
    payment_intent_id: str | None = None,
) -> dict[str, Any]:
    return {
        "id": refund_id or new_id("re"),
        "object": "refund",
        "amount": amount,
        "currency": "usd",
        "charge": charge_id,
        "payment_intent": payment_intent_id,
        "status": status,
        "metadata": dict(metadata or {}),
        "balance_transaction": new_id("txn"),
        "failure_balance_transaction": new_id("txn") if status == "failed" else None,
        "failure_reason": "expired_or_canceled_card" if status == "failed" else None,
    }


def dispute(
    *,
    charge_id: str,
    payment_intent_id: str,
    amount: int,
    fee: int = 1500,
    won: bool = False,
    dispute_id: str | None = None,
) -> dict[str, Any]:
    withdrawn = {
        "id": new_id("txn"),
        "object": "balance_transaction",
        "amount": -amount,
        "fee": fee,
        "net": -amount - fee,
        "created": 1_700_000_000,
        "reporting_category": "dispute",
    }
    txns = [withdrawn]
    if won:
        txns.append(
            {
                "id": new_id("txn"),
                "object": "balance_transaction",
                "amount": amount,
                "fee": 0,
                "net": amount,
                "created": 1_700_000_100,
                "reporting_category": "dispute_reversal",
            }
        )
    return {
        "id": dispute_id or new_id("dp"),
        "object": "dispute",
        "amount": amount,
        "currency": "usd",
        "charge": charge_id,
        "payment_intent": payment_intent_id,
        "status": "won" if won else "needs_response",
        "reason": "fraudulent",
        "balance_transactions": txns,
    }


def topup(*, amount: int) -> dict[str, Any]:
    tu_id = new_id("tu")
    return {
        "id": tu_id,
        "object": "topup",
        "amount": amount,
        "currency": "usd",
        "status": "succeeded",
        "balance_transaction": new_id("txn"),
    }
