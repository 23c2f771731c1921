"""Fixtures: a started emulator, the real stripe client configured like our app, and a
tiny local HTTP receiver for webhooks. No database is used."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
import stripe

from stripe_emulator import ChaosConfig, EmulatorServer

API_KEY = "sk_test_emulator_tests"
WEBHOOK_SECRET = "whsec_test_emulator_fixture_secret"


def make_client(
    server: EmulatorServer, *, timeout: float = 10.0, retries: int = 0
) -> stripe.StripeClient:
    """Exactly how the app builds its client."""
    return stripe.StripeClient(
        API_KEY,
        base_addresses={"api": server.url},
        max_network_retries=retries,
        http_client=stripe.RequestsClient(timeout=timeout),
    )


@dataclass
class Received:
    headers: dict[str, str]
    body: bytes

    @property
    def event(self) -> dict[str, Any]:
        return json.loads(self.body)


@dataclass
class Receiver:
    """Records every POST; answers with `statuses` in order, then 200."""

    url: str = ""
    received: list[Received] = field(default_factory=list)
    statuses: list[int] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def event_ids(self) -> list[str]:
        with self.lock:
            return [r.event["id"] for r in self.received]

    def events(self) -> list[dict[str, Any]]:
        with self.lock:
            return [r.event for r in self.received]


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    state = Receiver()

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            pass

        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            with state.lock:
                state.received.append(Received(dict(self.headers.items()), body))
                status = state.statuses.pop(0) if state.statuses else 200
            self.send_response(status)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"ok")

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.daemon_threads = True
    thread = threading.Thread(
        target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
    )
    thread.start()
    state.url = f"http://127.0.0.1:{httpd.server_address[1]}/webhooks/stripe"
    yield state
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture
def chaos() -> ChaosConfig:
    return ChaosConfig(seed=7)


@pytest.fixture
def emulator(emulator_factory: Any, chaos: ChaosConfig) -> EmulatorServer:
    return emulator_factory(port=0, chaos=chaos, point_app=False)


@pytest.fixture
def hooked(receiver: Receiver, chaos: ChaosConfig) -> Iterator[EmulatorServer]:
    """An emulator delivering webhooks to `receiver`."""
    server = EmulatorServer(
        port=0,
        webhook_url=receiver.url,
        webhook_secret=WEBHOOK_SECRET,
        chaos=chaos,
        webhook_retry_backoff_seconds=0.01,
    )
    server.start()
    yield server
    server.stop()


@pytest.fixture
def client(emulator: EmulatorServer) -> stripe.StripeClient:
    return make_client(emulator)


@pytest.fixture
def global_stripe(emulator: EmulatorServer) -> Iterator[None]:
    """The module-level style: `stripe.api_base = server.url`."""
    saved = (
        stripe.api_key,
        stripe.api_base,
        stripe.max_network_retries,
        stripe.default_http_client,
    )
    stripe.api_key = API_KEY
    stripe.api_base = emulator.url
    stripe.max_network_retries = 0
    stripe.default_http_client = stripe.RequestsClient(timeout=10)
    yield
    stripe.api_key, stripe.api_base, stripe.max_network_retries, stripe.default_http_client = saved


def pay(client: stripe.StripeClient, amount: int = 2000, **extra: Any) -> stripe.PaymentIntent:
    params: dict[str, Any] = {
        "amount": amount,
        "currency": "usd",
        "payment_method": "pm_card_visa",
        "confirm": True,
    }
    params.update(extra)
    return client.v1.payment_intents.create(params=params)  # type: ignore[arg-type]


def helper(client: stripe.StripeClient, path: str, **params: Any) -> Any:
    """Call an emulator test helper the stripe client has no method for."""
    response = client.raw_request("post", path, **params)
    return client.deserialize(response, api_mode="V1")
