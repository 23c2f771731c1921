"""Builders: balance transactions stored as if imported, and ledger transactions posted the
way the marketplace and payouts flows post them (metadata `stripe_object`, ...)."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta
from typing import Any

from ledger.domain import PostingInput
from ledger.models import Transaction
from ledger.services import transaction_post
from reconciliation.services import balance_transactions_store

ASSET = "USD/2"
DAY = datetime(2026, 3, 10, tzinfo=UTC)
WINDOW = (DAY, DAY + timedelta(days=1))
_ids = itertools.count(1)
HOT = {"stripe:balance": None, "platform:stripe_fees": None, "world": None}


def uid(prefix: str) -> str:
    return f"{prefix}_test{next(_ids):08d}"


def bt_dict(
    source: str | None,
    *,
    amount: int,
    fee: int = 0,
    category: str = "charge",
    type_: str | None = None,
    txn: str | None = None,
    created: datetime | None = None,
    currency: str = "usd",
    source_object: dict[str, Any] | None = None,
    status: str = "available",
) -> dict[str, Any]:
    created = created or DAY + timedelta(hours=10)
    return {
        "id": txn or uid("txn"),
        "object": "balance_transaction",
        "amount": amount,
        "available_on": int(created.timestamp()),
        "created": int(created.timestamp()),
        "currency": currency,
        "description": None,
        "exchange_rate": None,
        "fee": fee,
        "fee_details": [],
        "net": amount - fee,
        "reporting_category": category,
        "source": source_object if source_object is not None else source,
        "status": status,
        "type": type_ or category,
        "balance_type": "payments",
    }


def stripe_bt(source: str | None, **kwargs: Any) -> dict[str, Any]:
    """Store one balance transaction as if imported; returns its dict."""
    data = bt_dict(source, **kwargs)
    balance_transactions_store([data])
    return data


def post(
    postings: list[tuple[str, str, int]],
    *,
    stripe_object: str | None,
    txn: str | None = None,
    flow: str = "payment",
    asset: str = ASSET,
    reference: str | None = None,
    timestamp: datetime | None = None,
) -> Transaction:
    metadata: dict[str, Any] = {"flow": flow}
    if stripe_object is not None:
        metadata["stripe_object"] = stripe_object
    if txn is not None:
        metadata["stripe_balance_transaction"] = txn
    overdraft: dict[str, int | None] = dict(HOT)
    for source, _dst, _amount in postings:
        overdraft.setdefault(source, None)
    result = transaction_post(
        postings=[PostingInput(s, d, asset, a) for s, d, a in postings],
        metadata=metadata,
        reference=reference,
        timestamp=timestamp or DAY + timedelta(hours=10),
        overdraft=overdraft,
    )
    return result.transaction


def book_payment(
    charge: str, gross: int, fee: int, *, txn: str | None = None, with_fee: bool = True, **kw: Any
) -> Transaction:
    """The payment flow: gross from stripe:balance into the order, the fee back into it."""
    postings = [("stripe:balance", f"orders:{charge}", gross)]
    if with_fee and fee:
        postings.append(("platform:stripe_fees", "stripe:balance", fee))
    return post(postings, stripe_object=charge, txn=txn, **kw)


def book_refund(refund: str, amount: int, **kw: Any) -> Transaction:
    return post(
        [("platform:losses", "stripe:balance", amount)], stripe_object=refund, flow="refund", **kw
    )


def payment(gross: int = 2599, fee: int | None = None, **kw: Any) -> tuple[str, dict[str, Any]]:
    """A charge at Stripe (its balance transaction stored); returns (ch id, bt dict)."""
    charge = uid("ch")
    fee = fee if fee is not None else (gross * 29 + 500) // 1000 + 30
    return charge, stripe_bt(charge, amount=gross, fee=fee, **kw)
