"""A dropped payment webhook, with the real marketplace flow: the order is placed through the
marketplace services, paid at the Stripe emulator, and its signed webhooks are delivered to a
receiver that hands them to the inbox like the webhook view does (verify, parse, store,
process through the app's real handlers). The emulator's chaos switch then drops every
delivery of a second payment. Reconciliation finds that charge missing in the ledger, finds
its event at Stripe, and the safe repair replays it; the next run matches everything."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from ledger.selectors import balance_get
from marketplace.models import Order
from marketplace.services.orders import order_place
from marketplace.services.parties import restaurant_onboard
from reconciliation.matching import Outcome
from reconciliation.models import ReconciliationItem
from reconciliation.services import reconciliation_run, run_repairs_apply
from stripe_emulator import ChaosConfig, EmulatorServer
from stripe_gateway.client import StripeGateway
from stripe_gateway.errors import CardDeclined
from stripe_gateway.models import StripeEvent
from stripe_gateway.services import event_ingest, event_parse, event_process
from stripe_gateway.signature import verify_signature

pytestmark = [pytest.mark.django_db, pytest.mark.slow]
SECRET = "whsec_reconciliation_dropped"


@dataclass
class Receiver:
    """Records signed deliveries; the test thread stores and processes them (in the test's
    database transaction, which the app's own thread could not see)."""

    url: str = ""
    bodies: list[tuple[bytes, str]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def take(self) -> list[tuple[bytes, str]]:
        with self.lock:
            taken, self.bodies = self.bodies, []
        return taken


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    state = Receiver()

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            pass

        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            with state.lock:
                state.bodies.append((body, self.headers.get("Stripe-Signature", "")))
            self.send_response(200)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"ok")

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    state.url = f"http://127.0.0.1:{httpd.server_address[1]}/webhooks/stripe/"
    yield state
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture
def emulator(emulator_factory: Any, receiver: Receiver, settings: Any) -> EmulatorServer:
    server = emulator_factory(
        port=0,
        api_key="sk_test_reconciliation",
        webhook_url=receiver.url,
        webhook_secret=SECRET,
        chaos=ChaosConfig(seed=3),
    )
    settings.STRIPE_WEBHOOK_SECRETS = [SECRET]
    settings.MARKETPLACE_DEFER_SECONDS = 0.05
    return server


def deliver(server: EmulatorServer, receiver: Receiver) -> int:
    """What the webhook view and the worker do with what arrived: verify, store, process."""
    assert server.flush(15)
    delivered = 0
    for body, header in receiver.take():
        verify_signature(body, header, [SECRET], tolerance=300)
        event_ingest(payload=event_parse(body), schedule=False)
        delivered += 1
    for _round in range(5):  # out-of-order events are deferred: process until settled
        pending = StripeEvent.objects.exclude(status__in=["processed", "ignored"])
        if not pending.exists():
            break
        for row in pending:
            StripeEvent.objects.filter(pk=row.pk).update(next_attempt_at=None)
            event_process(event_id=row.stripe_id)
    return delivered


def customer_pays(server: EmulatorServer, intent_id: str) -> None:
    gateway = StripeGateway(api_key="sk_test_customer", api_base=server.url, max_network_retries=0)
    try:
        gateway.payment_intent_confirm(
            payment_intent_id=intent_id, payment_method="pm_card_visa", idempotency_key=intent_id
        )
    except CardDeclined:  # pragma: no cover - a visa test card is never declined
        pytest.fail("the test card was declined")


def test_a_dropped_payment_webhook_is_found_and_repaired(
    emulator: EmulatorServer, receiver: Receiver
):
    # given a restaurant and an order paid with its webhooks delivered
    restaurant = restaurant_onboard(name="Pho 99", commission="15%", with_stripe_account=False)
    first, intent = order_place(restaurant_id=restaurant.pk, subtotal=2000, delivery_fee=500)
    customer_pays(emulator, intent["id"])
    assert deliver(emulator, receiver) > 0
    first.refresh_from_db()
    assert first.status == Order.Status.PAID

    # and a second order whose webhooks are all dropped by the emulator's chaos switch
    emulator.set_chaos(drop_rate=1.0)
    second, intent = order_place(restaurant_id=restaurant.pk, subtotal=3100, delivery_fee=400)
    customer_pays(emulator, intent["id"])
    assert deliver(emulator, receiver) == 0
    assert emulator.stats()["webhooks"]["dropped"] > 0
    second.refresh_from_db()
    assert second.status != Order.Status.PAID
    charge = emulator.state.store.objects[intent["id"]]["latest_charge"]
    now = datetime.fromtimestamp(emulator.state.now(), tz=UTC)
    window = (now - timedelta(hours=1), now + timedelta(hours=1))

    # when the day is reconciled
    found = reconciliation_run(window_start=window[0], window_end=window[1])

    # then the missing payment is found, with the event to replay, found at Stripe
    assert found.counts == {"matched": 1, "missing_in_ledger": 1}
    item = ReconciliationItem.objects.get(run=found, outcome=Outcome.MISSING_IN_LEDGER)
    assert item.key == charge
    assert item.safe
    event_id = item.repair["event_id"]
    assert item.suggested_action == (
        f"payment webhook for {charge} never reached us: replay event {event_id} "
        "(payment_intent.succeeded, fetched from Stripe)"
    )
    assert not StripeEvent.objects.filter(stripe_id=event_id).exists()
    net = 3500 - ((3500 * 29 + 500) // 1000 + 30)
    assert found.totals["USD/2"]["drift"] == -net
    assert found.totals["USD/2"]["unexplained"] == 0

    # when staff apply the safe repairs and the window runs again
    report = run_repairs_apply(run=found)
    after = reconciliation_run(window_start=window[0], window_end=window[1])

    # then the event was fetched and processed by the real payment handler
    assert (report.applied, report.failed) == (1, 0)
    assert StripeEvent.objects.get(stripe_id=event_id).status == StripeEvent.Status.PROCESSED
    second.refresh_from_db()
    assert second.status == Order.Status.PAID
    assert second.charge_id == charge
    assert after.counts == {"matched": 2}
    assert after.changes["changed"] == {"missing_in_ledger -> matched": 1}
    assert after.totals["USD/2"]["drift"] == 0
    assert (
        -balance_get(address="stripe:balance", asset="USD/2")
        == after.totals["USD/2"]["stripe_total"]
    )
