"""End to end: the real stripe client (through the seam) against the Stripe emulator, whose
signed webhooks are delivered over HTTP into the running app (live_server), stored once,
processed through the handler table."""

from __future__ import annotations

import threading
from datetime import timedelta
from typing import Any

import pytest
from django.contrib.auth.models import Group
from django.utils import timezone

from stripe_emulator import ChaosConfig, EmulatorServer
from stripe_gateway import services
from stripe_gateway.client import StripeGateway, get_gateway
from stripe_gateway.errors import CardDeclined, OutcomeUnknown
from stripe_gateway.models import StripeEvent
from stripe_gateway.registry import Registration

# Only these apps' tables are flushed afterwards (the ledger's refuse TRUNCATE by design).
pytestmark = [
    pytest.mark.slow,
    pytest.mark.django_db(
        transaction=True,
        available_apps=[
            "stripe_gateway",
            "marketplace",
            "audit",
            "django.contrib.auth",
            "django.contrib.contenttypes",
        ],
    ),
]
SECRET = "whsec_e2e_emulator"
Status = StripeEvent.Status


@pytest.fixture
def handlers(monkeypatch: pytest.MonkeyPatch) -> dict[str, Registration]:
    """A handler table of this test's own (the apps' handlers would book into the ledger)."""
    table: dict[str, Registration] = {}
    monkeypatch.setattr(services, "HANDLERS", table)
    return table


@pytest.fixture
def emulator(emulator_factory: Any, live_server: Any, settings: Any) -> EmulatorServer:
    server = emulator_factory(
        port=0,
        api_key="sk_test_e2e",
        webhook_url=f"{live_server.url}/webhooks/stripe/",
        webhook_secret=SECRET,
        chaos=ChaosConfig(seed=7),
    )
    settings.STRIPE_WEBHOOK_SECRETS = ["whsec_rotated_out", SECRET]
    return server


def pay(gateway: StripeGateway, order: int, payment_method: str = "pm_card_visa") -> dict:
    return gateway.payment_intent_create(
        amount=2599,
        asset="USD/2",
        idempotency_key=f"payment:order-{order}",
        metadata={"order_id": order},
        transfer_group=f"ORDER_{order}",
        payment_method=payment_method,
        confirm=True,
        payment_method_types=["card"],
    )


def test_a_payment_flows_from_the_emulator_into_the_inbox(
    emulator: EmulatorServer, handlers: dict[str, Registration]
) -> None:
    # given: a two-phase handler (fetch the PaymentIntent from "Stripe", then write)
    seen: list[tuple[str, str]] = []
    lock = threading.Lock()

    def fetch(event: StripeEvent) -> dict:
        return get_gateway().payment_intent_retrieve(event.data_object["id"])

    def book(event: StripeEvent, intent: dict) -> None:
        with lock:
            seen.append((intent["id"], intent["status"]))
        Group.objects.get_or_create(name=f"paid:{intent['metadata']['order_id']}")

    handlers["payment_intent.succeeded"] = Registration("payment_intent.succeeded", book, fetch)
    gateway = get_gateway()

    # when: the order is paid through the seam, and the emulator delivers its webhooks
    intent = pay(gateway, order=42)
    again = pay(gateway, order=42)  # an application retry: same key, same PaymentIntent
    assert emulator.flush(15)

    # then: the PaymentIntent succeeded at "Stripe", exactly once
    assert intent["status"] == "succeeded"
    assert again["id"] == intent["id"]
    assert (intent["amount"], intent["currency"]) == (2599, "usd")

    # and every event is in the inbox once, processed or ignored
    rows = list(StripeEvent.objects.order_by("created", "id"))
    types = {row.type for row in rows}
    assert "payment_intent.succeeded" in types
    assert len(rows) == len({row.stripe_id for row in rows})
    by_type = {row.type: row for row in rows}
    assert by_type["payment_intent.succeeded"].status == Status.PROCESSED
    assert all(
        row.status == Status.IGNORED for row in rows if row.type != "payment_intent.succeeded"
    )
    assert seen == [(intent["id"], "succeeded")]
    assert Group.objects.filter(name="paid:42").count() == 1

    # and the inbox matches what the Events API lists (nothing missed)
    listed = {e["id"] for e in gateway.events_iter(created_gte=0)}
    assert listed == {row.stripe_id for row in rows}


def test_duplicated_and_shuffled_deliveries_still_make_one_row_each(
    emulator: EmulatorServer, handlers: dict[str, Registration]
) -> None:
    # given: every event delivered 2-3 times, in random order
    emulator.set_chaos(duplicate_rate=1.0, max_duplicates=2, shuffle=True)
    calls: list[str] = []
    lock = threading.Lock()

    def book(event: StripeEvent) -> None:
        with lock:
            calls.append(event.data_object["id"])

    handlers["payment_intent.succeeded"] = Registration("payment_intent.succeeded", book)
    gateway = get_gateway()

    # when
    intents = [pay(gateway, order=n) for n in range(5)]
    assert emulator.flush(20)

    # then
    deliveries = [d for d in emulator.deliveries() if d.get("status") == 200]
    rows = StripeEvent.objects.all()
    assert len(deliveries) > rows.count()  # duplicates did arrive
    assert rows.count() == len({e["id"] for e in gateway.events_iter(created_gte=0)})
    assert sorted(calls) == sorted(i["id"] for i in intents)


def test_sync_fills_the_gap_left_by_dropped_deliveries(
    emulator: EmulatorServer, handlers: dict[str, Registration]
) -> None:
    # given: every delivery is dropped
    emulator.set_chaos(drop_rate=1.0)
    pay(get_gateway(), order=7)
    assert emulator.flush(10)
    assert StripeEvent.objects.count() == 0

    # when
    result = services.events_sync(since=timezone.now() - timedelta(hours=1))

    # then
    assert result.stored > 0 and result.already == 0
    assert StripeEvent.objects.count() == result.stored


def test_errors_from_the_emulator_map_to_ours(emulator: EmulatorServer) -> None:
    gateway = get_gateway()
    with pytest.raises(CardDeclined) as declined:
        pay(gateway, order=9, payment_method="pm_card_chargeDeclined")
    assert declined.value.provider_status == 402

    emulator.set_chaos(api_error_rate=1.0, api_paths=("/v1/transfers",))
    with pytest.raises(OutcomeUnknown):
        gateway.transfer_create(
            amount=100,
            asset="USD/2",
            destination="acct_missing",
            idempotency_key="transfer:e2e",
            transfer_group=None,
            metadata={},
        )
