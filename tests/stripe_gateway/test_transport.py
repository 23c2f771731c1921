"""The gateway's default HTTP transport, urllib3 (`STRIPE_HTTP_CLIENT`), end to end over
loopback: the same objects as the `requests` transport from the emulator, and the SDK's
retry contract kept: a dropped connection and a read timeout are retried with the same
idempotency key, a refused connection ends as the gateway's own error, a TLS failure is
never retried. (`responses`, the other tests' Stripe double, intercepts `requests` only.)"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler
from typing import Any

import pytest
import stripe

from stripe_emulator import EmulatorServer
from stripe_gateway.client import StripeGateway
from stripe_gateway.errors import OutcomeUnknown, ProviderUnavailable
from tests.stripe_gateway.loopback import answer_json, serving

TRANSFER = {"id": "tr_transport", "object": "transfer", "amount": 500, "currency": "usd"}


@pytest.fixture
def emulator() -> Iterator[EmulatorServer]:
    server = EmulatorServer(port=0).start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(autouse=True)
def _no_proxy_no_sleep(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY"):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.lower(), raising=False)
    monkeypatch.setattr(stripe.HTTPClient, "_sleep_time_seconds", lambda self, n: 0)


def _gateway(base: str, http_client: str = "urllib3", **options: Any) -> StripeGateway:
    options.setdefault("max_network_retries", 0)
    return StripeGateway(
        api_key="sk_test_transport", api_base=base, http_client=http_client, **options
    )


def test_urllib3_is_the_default_and_a_transport_must_be_known() -> None:
    assert StripeGateway(api_key="sk_test_x").http_client == "urllib3"
    with pytest.raises(ValueError, match="http_client"):
        StripeGateway(api_key="sk_test_x", http_client="curl")


def test_both_transports_send_and_read_the_same(emulator: EmulatorServer) -> None:
    # given: a payment made through the default transport
    fast, stock = _gateway(emulator.url), _gateway(emulator.url, "requests")
    create: dict[str, Any] = {
        "amount": 1234,
        "asset": "USD/2",
        "idempotency_key": "transport:1",
        "metadata": {"order_id": "1"},
        "payment_method": "pm_card_visa",
        "confirm": True,
    }
    intent = fast.payment_intent_create(**create)

    # when: read back through each transport; the same create again through the other
    charges = [g.charge_retrieve(intent["latest_charge"]) for g in (fast, stock)]
    replay = stock.payment_intent_create(**create)

    # then
    assert intent["status"] == "succeeded" and intent["metadata"] == {"order_id": "1"}
    assert charges[0] == charges[1]
    assert charges[0]["amount"] == 1234
    assert replay == intent  # the same key: Stripe's stored answer, whichever transport


class _Flaky(BaseHTTPRequestHandler):
    """POST /v1/transfers: the first request fails as `mode` says, the next ones succeed."""

    protocol_version = "HTTP/1.1"
    mode = "drop"
    keys: list[str] = []

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.keys.append(self.headers.get("Idempotency-Key", ""))
        if len(self.keys) == 1 and self.mode == "drop":
            self.close_connection = True  # no answer at all: the connection is dropped
            return
        if len(self.keys) == 1 and self.mode == "slow":
            time.sleep(1.0)  # past the client's read timeout
        answer_json(self, TRANSFER)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def flaky() -> Iterator[str]:
    _Flaky.keys = []
    with serving(_Flaky) as url:
        yield url


def _transfer(gateway: StripeGateway) -> dict[str, Any]:
    return gateway.transfer_create(
        amount=500,
        asset="USD/2",
        destination="acct_1",
        idempotency_key="transfer:transport",
        transfer_group="payout:1",
        metadata={"payout_id": "1"},
    )


@pytest.mark.parametrize("mode", ["drop", "slow"])
def test_a_dropped_or_timed_out_request_is_retried_with_the_same_key(flaky: str, mode: str) -> None:
    # given: a first attempt without an answer (dropped, or slower than the read timeout)
    _Flaky.mode = mode
    gateway = _gateway(flaky, max_network_retries=1, timeout=0.3)

    # when
    transfer = _transfer(gateway)

    # then: retried once, with the caller's key both times
    assert transfer["id"] == TRANSFER["id"]
    assert _Flaky.keys == ["transfer:transport"] * 2


def test_without_retries_a_dropped_write_is_an_unknown_outcome(flaky: str) -> None:
    _Flaky.mode = "drop"

    with pytest.raises(OutcomeUnknown):
        _transfer(_gateway(flaky, max_network_retries=0))

    assert _Flaky.keys == ["transfer:transport"]


def test_a_refused_connection_is_the_gateways_error_after_the_retries() -> None:
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]

    with pytest.raises(ProviderUnavailable):
        _gateway(f"http://127.0.0.1:{port}", max_network_retries=2).balance_retrieve()


def test_tls_is_verified_against_the_sdks_bundle_and_a_failure_is_not_retried(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # given: the default transport on https
    gateway = _gateway("https://api.stripe.test", max_network_retries=2)
    pool = gateway._http._pool  # type: ignore[attr-defined]
    assert pool.connection_pool_kw["cert_reqs"] == "CERT_REQUIRED"
    assert pool.connection_pool_kw["ca_certs"] == stripe.ca_bundle_path

    # when: the TLS handshake fails
    import urllib3

    attempts: list[str] = []

    def refuse(*args: Any, **kwargs: Any) -> Any:
        attempts.append(args[1] if len(args) > 1 else "")
        raise urllib3.exceptions.SSLError("certificate verify failed")

    monkeypatch.setattr(pool, "request", refuse)

    # then: a final error, no retry
    with pytest.raises(ProviderUnavailable):
        gateway.balance_retrieve()
    assert len(attempts) == 1


def test_a_forked_process_opens_its_own_connections(emulator: EmulatorServer) -> None:
    """A pool built before a fork (a Celery prefork parent, say) is not shared by the child:
    two processes on one keep-alive connection would read each other's answers."""
    import os

    # given: a pool with a kept-alive connection
    gateway = _gateway(emulator.url)
    gateway.balance_retrieve()
    pool = gateway._http._pool  # type: ignore[attr-defined]
    assert pool.pools

    # when: the same gateway is used from another process id
    gateway._http._pid = os.getpid() + 1  # type: ignore[attr-defined]
    cleared: list[bool] = []
    original = pool.clear

    def clear() -> None:
        cleared.append(True)
        original()

    pool.clear = clear
    balance = gateway.balance_retrieve()

    # then: the inherited connections were dropped first, and the call went through
    assert cleared == [True]
    assert balance["object"] == "balance"
    assert gateway._http._pid == os.getpid()  # type: ignore[attr-defined]


def test_an_unknown_transport_setting_is_refused_at_start_up(settings: Any) -> None:
    from django.core.exceptions import ImproperlyConfigured

    from stripe_gateway import conf

    settings.STRIPE_HTTP_CLIENT = "curl"
    with pytest.raises(ImproperlyConfigured, match="STRIPE_HTTP_CLIENT"):
        conf.validate()
    settings.STRIPE_HTTP_CLIENT = "requests"
    conf.validate()


@pytest.mark.parametrize("http_client", ["urllib3", "requests"])
def test_a_certificate_the_bundle_does_not_trust_fails_once_without_retry(
    tmp_path: Any, http_client: str
) -> None:
    """A real TLS handshake against a self-signed certificate: refused, and not retried (an
    interception, not a network blip), by either transport."""
    import shutil
    import ssl
    import subprocess
    from http.server import ThreadingHTTPServer

    if shutil.which("openssl") is None:
        pytest.skip("openssl is needed to make a certificate")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    request = ["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1"]
    subprocess.run(
        ["openssl", *request, "-subj", "/CN=127.0.0.1", "-keyout", str(key), "-out", str(cert)],
        check=True,
        capture_output=True,
    )
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    handshakes: list[int] = []
    _Flaky.keys = []

    class _Server(ThreadingHTTPServer):
        daemon_threads = True

        def get_request(self) -> Any:
            sock, address = self.socket.accept()
            handshakes.append(1)
            return context.wrap_socket(sock, server_side=True), address

        def handle_error(self, request: Any, client_address: Any) -> None:
            pass  # the refused handshake, seen from this side

    server = _Server(("127.0.0.1", 0), _Flaky)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        base = f"https://127.0.0.1:{server.server_address[1]}"
        gateway = _gateway(base, http_client, max_network_retries=2)
        with pytest.raises(ProviderUnavailable, match="SSL certificate"):
            gateway.balance_retrieve()
    finally:
        server.shutdown()
        server.server_close()
    assert handshakes == [1]
    assert _Flaky.keys == []  # no request got through
