"""Signed webhook delivery to a local receiver, retries, and delivery chaos."""

from __future__ import annotations

import pytest
import stripe

from stripe_emulator import ChaosConfig, EmulatorServer

from .conftest import WEBHOOK_SECRET, Receiver, make_client, pay


def test_events_are_delivered_signed_and_verify_with_construct_event(
    hooked: EmulatorServer, receiver: Receiver
) -> None:
    # given
    client = make_client(hooked)

    # when
    pi = pay(client, amount=1234)
    assert hooked.settle(5)

    # then
    assert len(receiver.received) == 4
    for delivery in receiver.received:
        event = stripe.Webhook.construct_event(
            delivery.body, delivery.headers["Stripe-Signature"], WEBHOOK_SECRET
        )
        assert isinstance(event, stripe.Event)
    types = [r.event["type"] for r in receiver.received]
    assert types == [
        "payment_intent.created",
        "charge.succeeded",
        "payment_intent.succeeded",
        "charge.updated",  # asynchronous capture: the balance transaction is attached
    ]
    assert receiver.received[1].event["data"]["object"]["balance_transaction"] is None
    updated = receiver.received[3].event["data"]
    assert updated["object"]["balance_transaction"].startswith("txn_")
    assert updated["previous_attributes"] == {"balance_transaction": None}
    assert "refunds" not in updated["object"]  # only when expanded
    succeeded = receiver.received[2].event
    assert succeeded["data"]["object"]["id"] == pi.id
    assert succeeded["data"]["object"]["status"] == "succeeded"
    assert succeeded["object"] == "event"
    assert succeeded["livemode"] is False
    assert succeeded["request"]["id"].startswith("req_")
    assert "account" not in succeeded
    header = receiver.received[0].headers["Stripe-Signature"]
    assert header.startswith("t=") and ",v1=" in header
    # delivered events report no pending webhooks any more
    assert client.v1.events.retrieve(succeeded["id"]).pending_webhooks == 0


def test_wrong_secret_fails_verification(hooked: EmulatorServer, receiver: Receiver) -> None:
    client = make_client(hooked)
    client.v1.customers.create()
    assert hooked.flush(5)
    delivery = receiver.received[0]
    with pytest.raises(stripe.SignatureVerificationError):
        stripe.Webhook.construct_event(
            delivery.body, delivery.headers["Stripe-Signature"], "whsec_other"
        )


def test_non_2xx_answers_are_retried_with_a_fresh_signature(
    hooked: EmulatorServer, receiver: Receiver
) -> None:
    # given: the receiver fails twice
    receiver.statuses = [500, 503]
    client = make_client(hooked)

    # when
    customer = client.v1.customers.create()
    assert hooked.flush(5)

    # then
    assert [r.event["data"]["object"]["id"] for r in receiver.received] == [customer.id] * 3
    assert hooked.webhooks.snapshot()["failed_attempts"] == 2
    attempts = [d["attempt"] for d in hooked.deliveries()]
    assert attempts == [1, 2, 3]
    for delivery in receiver.received:
        stripe.Webhook.construct_event(
            delivery.body, delivery.headers["Stripe-Signature"], WEBHOOK_SECRET
        )


def test_delivery_gives_up_after_max_attempts(receiver: Receiver) -> None:
    receiver.statuses = [500] * 3
    server = EmulatorServer(
        port=0,
        webhook_url=receiver.url,
        webhook_secret=WEBHOOK_SECRET,
        webhook_max_attempts=3,
        webhook_retry_backoff_seconds=0.01,
    ).start()
    try:
        client = make_client(server)
        customer = client.v1.customers.create()
        assert server.flush(5)
        assert len(receiver.received) == 3
        failed = client.v1.events.list(params={"delivery_success": False})  # type: ignore[typeddict-unknown-key]
        assert [e.data.object.id for e in failed.data] == [customer.id]
        assert failed.data[0].pending_webhooks == 1

        # the endpoint is back: failed deliveries can be sent again
        assert server.redeliver_failed() == 1
        assert server.flush(5)
        assert len(receiver.received) == 4
        assert client.v1.events.retrieve(failed.data[0].id).pending_webhooks == 0
    finally:
        server.stop()


def test_connected_account_events_carry_account(hooked: EmulatorServer, receiver: Receiver) -> None:
    client = make_client(hooked)
    account = client.v1.accounts.create(params={"type": "express"})
    assert hooked.flush(5)
    event = receiver.received[-1].event
    assert event["type"] == "account.updated"
    assert event["account"] == account.id


def test_connect_endpoint_gets_connected_account_events_with_its_own_secret(
    receiver: Receiver,
) -> None:
    platform_receiver_url = receiver.url
    server = EmulatorServer(
        port=0,
        webhook_url=platform_receiver_url + "?platform",
        webhook_secret=WEBHOOK_SECRET,
        connect_webhook_url=platform_receiver_url + "?connect",
        connect_webhook_secret="whsec_connect_secret",
    ).start()
    try:
        client = make_client(server)
        client.v1.accounts.create(params={"type": "express"})
        client.v1.customers.create()
        assert server.flush(5)
        by_type = {r.event["type"]: r for r in receiver.received}
        connect = by_type["account.updated"]
        stripe.Webhook.construct_event(
            connect.body, connect.headers["Stripe-Signature"], "whsec_connect_secret"
        )
        platform = by_type["customer.created"]
        stripe.Webhook.construct_event(
            platform.body, platform.headers["Stripe-Signature"], WEBHOOK_SECRET
        )
        assert len(receiver.received) == 2
    finally:
        server.stop()


def _chaotic(receiver: Receiver, chaos: ChaosConfig) -> EmulatorServer:
    return EmulatorServer(
        port=0, webhook_url=receiver.url, webhook_secret=WEBHOOK_SECRET, chaos=chaos
    ).start()


def test_duplicate_rate_delivers_some_events_more_than_once(receiver: Receiver) -> None:
    server = _chaotic(receiver, ChaosConfig(seed=3, duplicate_rate=0.5, max_duplicates=2))
    try:
        client = make_client(server)
        created = [client.v1.customers.create().id for _ in range(40)]
        assert server.flush(10)
        ids = [r.event["data"]["object"]["id"] for r in receiver.received]
        assert set(ids) == set(created)
        duplicated = {i for i in ids if ids.count(i) > 1}
        assert 5 <= len(duplicated) <= 35
        assert len(ids) == 40 + server.webhooks.snapshot()["duplicates"]
        # every copy is validly signed and the same event id
        for delivery in receiver.received:
            stripe.Webhook.construct_event(
                delivery.body, delivery.headers["Stripe-Signature"], WEBHOOK_SECRET
            )
    finally:
        server.stop()


def test_shuffle_delivers_out_of_order_but_completely(receiver: Receiver) -> None:
    server = _chaotic(
        receiver, ChaosConfig(seed=5, shuffle=True, shuffle_window=10, shuffle_hold_ms=50)
    )
    try:
        client = make_client(server)
        server.webhooks.pause()  # let a window of events queue up
        created = [client.v1.customers.create().id for _ in range(30)]
        server.webhooks.resume()
        assert server.flush(10)
        delivered = [r.event["data"]["object"]["id"] for r in receiver.received]
        assert sorted(delivered) == sorted(created)
        assert delivered != created
    finally:
        server.stop()


def test_drop_then_redeliver_dropped(receiver: Receiver) -> None:
    server = _chaotic(receiver, ChaosConfig(seed=11, drop_rate=0.5))
    try:
        client = make_client(server)
        created = [client.v1.customers.create().id for _ in range(30)]
        assert server.flush(10)
        first_pass = [r.event["data"]["object"]["id"] for r in receiver.received]
        dropped = server.webhooks.dropped_count()
        assert 5 <= dropped <= 25
        assert len(first_pass) == 30 - dropped

        redelivered = server.redeliver_dropped()
        assert server.flush(10)

        assert redelivered == dropped
        delivered = [r.event["data"]["object"]["id"] for r in receiver.received]
        assert sorted(delivered) == sorted(created)
        assert server.webhooks.dropped_count() == 0
    finally:
        server.stop()


def test_delay_ms_postpones_delivery(receiver: Receiver) -> None:
    server = _chaotic(receiver, ChaosConfig(delay_ms=1000))
    try:
        client = make_client(server)
        client.v1.customers.create()
        assert receiver.received == []
        assert server.flush(5)
        assert len(receiver.received) == 1
    finally:
        server.stop()


def test_same_seed_same_chaos_decisions(receiver: Receiver) -> None:
    outcomes = []
    for _ in range(2):
        server = _chaotic(receiver, ChaosConfig(seed=42, drop_rate=0.3, duplicate_rate=0.3))
        try:
            client = make_client(server)
            for _ in range(20):
                client.v1.customers.create()
            assert server.flush(10)
            snapshot = server.webhooks.snapshot()
            outcomes.append((snapshot["dropped"], snapshot["duplicates"]))
        finally:
            server.stop()
    assert outcomes[0] == outcomes[1]


class _SlowKeepAliveReceiver:
    """An HTTP/1.1 receiver that holds each delivery `delay` seconds, answers `fail_first`
    deliveries 500, and counts concurrent deliveries and TCP connections."""

    def __init__(
        self, delay: float, fail_first: int = 0, idle_timeout: float | None = None
    ) -> None:
        import threading
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        self.lock = threading.Lock()
        self.bodies: list[bytes] = []
        self.active = self.peak = self.connections = 0
        self.fail_first = fail_first
        state = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            timeout = idle_timeout  # a connection idle this long is closed

            def log_message(self, format: str, *args: object) -> None:
                pass

            def setup(self) -> None:
                super().setup()
                with state.lock:
                    state.connections += 1

            def do_POST(self) -> None:
                import time

                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                with state.lock:
                    state.active += 1
                    state.peak = max(state.peak, state.active)
                time.sleep(delay)
                with state.lock:
                    state.active -= 1
                    failing = state.fail_first > 0
                    state.fail_first -= 1 if failing else 0
                    if not failing:
                        state.bodies.append(body)
                self.send_response(500 if failing else 200)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/webhooks/stripe"

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def test_a_pool_of_threads_delivers_concurrently_completely_over_keep_alive() -> None:
    import json

    receiver = _SlowKeepAliveReceiver(delay=0.05, fail_first=3)
    server = EmulatorServer(
        port=0,
        webhook_url=receiver.url,
        webhook_secret=WEBHOOK_SECRET,
        webhook_retry_backoff_seconds=0.01,
        webhook_threads=4,
    )
    server.start()
    try:
        client = make_client(server)
        server.webhooks.pause()  # let the queue fill, so that every thread has work
        created = [client.v1.customers.create().id for _ in range(24)]
        server.webhooks.resume()
        assert server.flush(10)

        delivered = [json.loads(b)["data"]["object"]["id"] for b in receiver.bodies]
        assert sorted(delivered) == sorted(created)  # each one exactly once (after retries)
        assert receiver.peak > 1  # deliveries overlapped
        assert receiver.connections <= 4  # one keep-alive connection per thread
        stats = server.webhooks.snapshot()
        assert stats["delivered"] == 24 and stats["failed_attempts"] == 3
        assert stats["in_flight"] == 0 and stats["queued"] == 0
    finally:
        server.stop()
        receiver.close()


def test_a_receiver_closing_an_idle_keep_alive_connection_costs_no_failed_attempt() -> None:
    import time

    receiver = _SlowKeepAliveReceiver(delay=0.0, idle_timeout=0.1)
    server = EmulatorServer(
        port=0, webhook_url=receiver.url, webhook_secret=WEBHOOK_SECRET, webhook_threads=1
    )
    server.start()
    try:
        client = make_client(server)
        client.v1.customers.create()
        assert server.flush(5)
        time.sleep(0.4)  # the receiver closes the idle connection
        client.v1.customers.create()
        assert server.flush(5)

        stats = server.webhooks.snapshot()
        assert len(receiver.bodies) == 2
        assert stats["delivered"] == 2 and stats["failed_attempts"] == 0
        assert receiver.connections == 2  # reopened once
    finally:
        server.stop()
        receiver.close()
