"""End to end against the emulator as the pinned Stripe version behaves: the webhook
endpoints set up from the handler table, a refund made in the Dashboard known only through
`refund.created`, and a dispute with several balance transactions reconciled exactly."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from io import StringIO
from pathlib import Path
from typing import Any

import pytest
from django.core.management import CommandError, call_command

from marketplace.models import Dispute, Order, Refund
from marketplace.services.orders import order_deliver, order_place
from marketplace.services.parties import restaurant_onboard, rider_onboard
from reconciliation.models import ReconciliationItem
from reconciliation.services import reconciliation_run
from stripe_emulator import EmulatorServer, card_fee
from stripe_gateway.client import PINNED_API_VERSION
from stripe_gateway.endpoints import required_events
from tests.marketplace.e2e import bal, customer_pays, emulator, postings, settle

__all__ = ["emulator"]

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]


@pytest.fixture
def bare_emulator(emulator_factory: Any, settings: Any) -> EmulatorServer:
    """An emulator with no webhook endpoint: `stripe_webhooks setup` creates them."""
    server = emulator_factory()
    settings.CELERY_TASK_ALWAYS_EAGER = True
    settings.MARKETPLACE_DEFER_SECONDS = 0.05
    settings.STRIPE_EVENTS_MAX_ATTEMPTS = 50
    return server


def _setup(url: str, secret_dir: Path) -> str:
    out = StringIO()
    call_command(
        "stripe_webhooks", "setup", "--url", url, "--secret-dir", str(secret_dir), stdout=out
    )
    return out.getvalue()


def _check(url: str) -> str:
    out = StringIO()
    call_command("stripe_webhooks", "check", "--url", url, stdout=out)
    return out.getvalue()


def test_setup_creates_both_endpoints_with_exactly_the_handled_events(
    bare_emulator: EmulatorServer, tmp_path: Path
) -> None:
    # when
    output = _setup("https://eats.example/webhooks/stripe/", tmp_path)

    # then
    endpoints = {
        e["metadata"]["eats_endpoint"]: e for e in bare_emulator.state.objects("webhook_endpoint")
    }
    assert set(endpoints) == {"platform", "connect"}
    platform, connect = endpoints["platform"], endpoints["connect"]
    assert platform["enabled_events"] == required_events(connect=False)
    assert (
        connect["enabled_events"]
        == required_events(connect=True)
        == [
            "payout.canceled",
            "payout.failed",
        ]
    )
    assert {"charge.updated", "topup.reversed", "refund.created"} <= set(platform["enabled_events"])
    # handled when it comes, but it repeats payment_intent.succeeded: not asked for
    assert "charge.succeeded" not in platform["enabled_events"]
    assert platform["api_version"] == connect["api_version"] == PINNED_API_VERSION
    for role in ("platform", "connect"):
        secret = (tmp_path / f"{role}.whsec").read_text().strip()
        assert secret.startswith("whsec_")
        assert oct((tmp_path / f"{role}.whsec").stat().st_mode)[-3:] == "600"
        assert str(tmp_path / f"{role}.whsec") in output
    assert "missing" not in _check("https://eats.example/webhooks/stripe/")

    # when: run again, nothing changes; check agrees
    again = _setup("https://eats.example/webhooks/stripe/", tmp_path / "again")
    assert again.count("unchanged") == 2
    assert bare_emulator.state.count("webhook_endpoint") == 2


def test_setup_drops_an_event_the_handlers_do_not_ask_for(
    bare_emulator: EmulatorServer, tmp_path: Path
) -> None:
    # given: a platform endpoint set up when charge.succeeded was still subscribed to
    _setup("https://eats.example/webhooks/stripe/", tmp_path)
    platform = next(
        e
        for e in bare_emulator.state.objects("webhook_endpoint")
        if e["metadata"]["eats_endpoint"] == "platform"
    )
    status, _ = bare_emulator.request(
        "POST",
        f"/v1/webhook_endpoints/{platform['id']}",
        {"enabled_events": [*platform["enabled_events"], "charge.succeeded"]},
    )
    assert status == 200
    assert "missing" not in _check("https://eats.example/webhooks/stripe/")  # extra is not a hole

    # when
    output = _setup("https://eats.example/webhooks/stripe/", tmp_path / "again")

    # then: the same endpoint, its list back to exactly what the handlers ask for
    assert "updated" in output
    endpoint = next(
        e for e in bare_emulator.state.objects("webhook_endpoint") if e["id"] == platform["id"]
    )
    assert endpoint["enabled_events"] == required_events(connect=False)
    assert bare_emulator.state.count("webhook_endpoint") == 2


def test_check_names_the_missing_events(bare_emulator: EmulatorServer, tmp_path: Path) -> None:
    # given: endpoints set up, then someone trims the platform one in the Dashboard
    _setup("https://eats.example/webhooks/stripe/", tmp_path)
    platform = next(
        e
        for e in bare_emulator.state.objects("webhook_endpoint")
        if e["metadata"]["eats_endpoint"] == "platform"
    )
    kept = [e for e in platform["enabled_events"] if e not in ("charge.updated", "topup.reversed")]
    status, _ = bare_emulator.request(
        "POST", f"/v1/webhook_endpoints/{platform['id']}", {"enabled_events": kept}
    )
    assert status == 200

    # when / then
    with pytest.raises(CommandError, match="1 endpoint"):
        _check("https://eats.example/webhooks/stripe/")
    out = StringIO()
    with pytest.raises(CommandError):
        call_command("stripe_webhooks", "check", "--url", "https://eats.example/x", stdout=out)
    assert "missing events: charge.updated, topup.reversed" in out.getvalue()

    # when: setup puts them back
    _setup("https://eats.example/webhooks/stripe/", tmp_path)
    assert "missing" not in _check("https://eats.example/webhooks/stripe/")


def test_a_dashboard_refund_is_booked_from_refund_created_alone(
    bare_emulator: EmulatorServer, live_server: Any, settings: Any, tmp_path: Path
) -> None:
    # given: the endpoints as setup makes them, minus every refund event but refund.created
    url = live_server.url + "/webhooks/stripe/"
    _setup(url, tmp_path)
    settings.STRIPE_WEBHOOK_SECRETS = [
        (tmp_path / f"{role}.whsec").read_text().strip() for role in ("platform", "connect")
    ]
    platform = next(
        e
        for e in bare_emulator.state.objects("webhook_endpoint")
        if e["metadata"]["eats_endpoint"] == "platform"
    )
    only_created = [
        e
        for e in platform["enabled_events"]
        if e not in ("charge.refunded", "refund.updated", "charge.refund.updated", "refund.failed")
    ]
    bare_emulator.request(
        "POST", f"/v1/webhook_endpoints/{platform['id']}", {"enabled_events": only_created}
    )
    restaurant = restaurant_onboard(name="Pho 99", commission="15%")
    rider = rider_onboard(name="Ana")
    order, intent = order_place(restaurant_id=restaurant.pk, subtotal=2000, delivery_fee=500)
    assert customer_pays(bare_emulator, intent["id"])
    settle(bare_emulator)
    order_deliver(order_id=order.pk, rider_id=rider.pk)
    order.refresh_from_db()
    assert order.status == Order.Status.DELIVERED

    # when: support refunds 700 in the Stripe Dashboard (not through our API)
    status, stripe_refund = bare_emulator.request(
        "POST", "/v1/refunds", {"charge": order.charge_id, "amount": 700}
    )
    assert status == 200
    settle(bare_emulator)

    # then: refund.created alone booked it, once, as a loss of the platform
    types = {d["event_type"] for d in bare_emulator.deliveries()}
    assert "refund.created" in types and "charge.refunded" not in types
    refund = Refund.objects.get(stripe_refund_id=stripe_refund["id"])
    assert (refund.amount, refund.status) == (700, "succeeded")
    assert postings(f"refund:{stripe_refund['id']}") == [("platform:losses", "stripe:balance", 700)]


def test_a_dispute_with_several_balance_transactions_is_booked_and_reconciled_exactly(
    emulator: EmulatorServer,
) -> None:
    # given: a disputed payment (withdrawal: -2500, fee 1500)
    restaurant = restaurant_onboard(name="Pho 99", commission="15%")
    order, intent = order_place(restaurant_id=restaurant.pk, subtotal=2000, delivery_fee=500)
    assert customer_pays(emulator, intent["id"], pm="pm_card_createDispute")
    settle(emulator)
    dispute = Dispute.objects.get(order=order)
    dp = dispute.stripe_dispute_id

    # when: Stripe adds a counter fee (0, fee 1500), the dispute is won (+2500), and the
    # dispute fee is given back (0, fee -1500); the events come in any order, twice
    emulator.request(
        "POST", f"/v1/test_helpers/disputes/{dp}/balance_transactions", {"amount": 0, "fee": 1500}
    )
    emulator.request("POST", f"/v1/test_helpers/disputes/{dp}/close", {"outcome": "won"})
    emulator.request(
        "POST", f"/v1/test_helpers/disputes/{dp}/balance_transactions", {"amount": 0, "fee": -1500}
    )
    emulator.set_chaos(duplicate_rate=1.0, shuffle=True)
    emulator.request("POST", f"/v1/disputes/{dp}", {"metadata": {"note": "x"}})
    settle(emulator)

    # then: every balance transaction booked once, amount and fee
    txns = emulator.state.store.objects[dp]["_balance_transactions"]
    assert len(txns) == 4
    dispute.refresh_from_db()
    assert (dispute.amount_withdrawn, dispute.amount_reinstated, dispute.fee) == (2500, 2500, 1500)
    stripe_net = sum(emulator.state.store.objects[t]["net"] for t in txns)
    assert stripe_net == -1500
    assert bal("platform:disputes") == 0
    assert bal("platform:stripe_fees") == -(card_fee(2500) + 1500)
    assert bal("stripe:balance") == -(2500 - card_fee(2500)) + 1500

    # and reconciliation matches the dp_ exactly
    now = datetime.fromtimestamp(emulator.state.now(), tz=UTC)
    run = reconciliation_run(
        window_start=now - timedelta(hours=1), window_end=now + timedelta(hours=1)
    )
    item = ReconciliationItem.objects.get(run=run, key=dp)
    assert item.outcome == "matched"
    assert run.counts == {"matched": 2}
    assert run.totals["USD/2"]["drift"] == 0
