"""Helpers of the flow tests: Stripe events for the fake gateway's objects, processed through
the real inbox (ingest, then process, as the Celery task would)."""

from __future__ import annotations

from typing import Any

from marketplace.models import Order
from marketplace.services.orders import order_create, order_payment_intent_create
from stripe_gateway.models import StripeEvent
from stripe_gateway.services import ProcessOutcome, event_ingest, event_process, event_replay
from tests.marketplace.fakes import FakeGateway, charge
from tests.marketplace.helpers import make_event


def event(event_type: str, obj: dict[str, Any]) -> dict[str, Any]:
    public = {k: v for k, v in obj.items() if not k.startswith("_")}
    return make_event(event_type, public)


def process(payload: dict[str, Any]) -> ProcessOutcome:
    """Deliver (ingest) and process one event; a duplicate is ingested as a no-op."""
    ingested = event_ingest(payload=payload, schedule=False)
    if not ingested.created:
        return ProcessOutcome(payload["id"], "duplicate")
    return event_process(event_id=payload["id"])


def drain(limit: int = 20) -> None:
    """Re-run deferred and failed events until none is left (what the sweeper does)."""
    for _ in range(limit):
        pending = list(
            StripeEvent.objects.exclude(status__in=["processed", "ignored"]).values_list(
                "stripe_id", flat=True
            )
        )
        if not pending:
            return
        for stripe_id in pending:
            event_replay(event_id=stripe_id, fetch_missing=False)
    raise AssertionError(f"events still pending: {pending}")


def placed_order(fake: FakeGateway, **kwargs: Any) -> tuple[Order, dict[str, Any]]:
    """An order with its PaymentIntent (at the fake)."""
    order = order_create(**kwargs)
    intent = order_payment_intent_create(order_id=order.pk)
    order.refresh_from_db()
    return order, fake.objects[intent["id"]]


def pay(
    fake: FakeGateway, order: Order, intent: dict[str, Any], **charge_kwargs: Any
) -> dict[str, Any]:
    """The customer pays: the charge exists at the fake Stripe and its webhook is processed."""
    ch = fake.add(
        charge(
            amount=charge_kwargs.pop("amount", order.total),
            payment_intent_id=intent["id"],
            order_id=order.pk,
            **charge_kwargs,
        )
    )
    intent.update(status="succeeded", latest_charge=ch["id"])
    outcome = process(event("payment_intent.succeeded", intent))
    assert outcome.status == "processed", outcome
    order.refresh_from_db()
    return ch
