"""The settlement sweeper: orders paid but awaiting their balance transaction.

Under asynchronous capture a charge succeeds before Stripe attaches its balance transaction;
`charge.updated` normally says when (see `payments`). If that event is late, lost, or was
processed before the attachment could be read, nothing else would ever book the payment: so
every minute (Celery beat) this fetches, with no transaction open, each charge of an order
AWAITING_SETTLEMENT for longer than MARKETPLACE_SETTLEMENT_GRACE, and books it when Stripe
has the balance transaction. There is no give-up: an order stays awaiting (and is fetched
again on each pass) for as long as Stripe has not settled the charge, hours if need be.

Must not import: payouts, reconciliation.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import timedelta

from django.db import transaction
from django.utils import timezone

from ledger.retry import retry_on_conflict
from marketplace import conf
from marketplace.models import Order
from marketplace.services.locks import order_lock
from marketplace.services.payments import payment_book
from stripe_gateway.client import get_gateway
from stripe_gateway.errors import PaymentProviderError

logger = logging.getLogger(__name__)

Status = Order.Status


@dataclass
class SettleResult:
    checked: int = 0
    outcomes: dict[str, int] = field(default_factory=dict)

    def add(self, outcome: str) -> None:
        self.outcomes[outcome] = self.outcomes.get(outcome, 0) + 1


def payments_settle(*, limit: int = 500, grace: float | None = None) -> SettleResult:
    """Book the payments of orders awaiting settlement whose charge now has its balance
    transaction (at most `limit` orders, oldest first). Must be called with no transaction
    open. Never raises for a Stripe answer: an unavailable Stripe is retried next pass."""
    if grace is None:
        grace = float(conf.get("MARKETPLACE_SETTLEMENT_GRACE"))
    cutoff = timezone.now() - timedelta(seconds=grace)
    rows = list(
        Order.objects.filter(status=Status.AWAITING_SETTLEMENT, paid_at__lte=cutoff)
        .order_by("paid_at", "id")
        .values_list("pk", "charge_id")[:limit]
    )
    result = SettleResult()
    gateway = get_gateway()
    for order_id, charge_id in rows:
        result.checked += 1
        try:
            charge = gateway.charge_retrieve(charge_id, expand=("balance_transaction",))
        except PaymentProviderError as exc:
            logger.warning("order %s: fetching charge %s failed: %s", order_id, charge_id, exc.code)
            result.add("unavailable")
            continue
        result.add(payment_settle(order_id=order_id, charge=charge))
    if rows:
        logger.info("settlement sweep: %s", result.outcomes)
    return result


@retry_on_conflict
def payment_settle(*, order_id: int, charge: dict) -> str:
    """Book a fetched charge for an order awaiting settlement (its own durable transaction).
    Returns payment_book's outcome, or "settled" when something else booked it first."""
    with transaction.atomic(durable=True):
        order = order_lock(order_id=order_id)
        if order.status != Status.AWAITING_SETTLEMENT:
            return "settled"
        return payment_book(order=order, charge=charge)
