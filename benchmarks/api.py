"""Benchmark `api`: the CPU and the statements of one public API request, in process.

The two requests every order makes through the API, `POST /api/v1/orders/` (the order, its
coupon reservation for one order in three, its PaymentIntent created at the emulator) and
`POST /api/v1/orders/<id>/deliver/` (the split), sent through Django's test client (the whole
middleware stack and DRF, as gunicorn's worker runs them) with a service account's knox token,
against the real database and the Stripe emulator in its own process. Between the two, each
order is paid at the emulator and its events are ingested and processed in this process (not
measured).

Reports per request: the thread CPU (`time.thread_time`: this process only; the emulator's
and PostgreSQL's are not in it) and the statements sent to PostgreSQL (counted at psycopg:
the ORM's and the prepared ones; BEGIN/COMMIT not included). `bench stack` measures the same
requests through gunicorn, among everything else an order costs.
"""

from __future__ import annotations

import json
import os
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from benchmarks.stack import API_KEY, _free_port, _setup, _start, _stop, _wait_http
from ops.bench import benchmark


@contextmanager
def _statements() -> Iterator[list[int]]:
    """Counts the statements psycopg sends while the block runs (one counter, this thread)."""
    import psycopg

    count = [0]
    original = psycopg.Cursor.execute

    def execute(self: Any, query: Any, *args: Any, **kwargs: Any) -> Any:
        count[0] += 1
        return original(self, query, *args, **kwargs)

    psycopg.Cursor.execute = execute  # type: ignore[method-assign]
    try:
        yield count
    finally:
        psycopg.Cursor.execute = original  # type: ignore[method-assign]


def _pay_all(orders: list[dict[str, Any]], since: int) -> None:
    """Pay each order at the emulator and process its events here, until all are paid."""
    from marketplace.models import Order
    from stripe_gateway.client import get_gateway
    from stripe_gateway.services import event_ingest, event_process

    gateway = get_gateway()
    for created in orders:
        intent = created["payment_intent"]["id"]
        gateway.payment_intent_confirm(
            payment_intent_id=intent, payment_method="pm_card_visa", idempotency_key=f"c:{intent}"
        )
    ids = [created["order"]["id"] for created in orders]
    seen: set[str] = set()
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        for event in reversed(list(gateway.events_iter(created_gte=since))):
            if event["id"] in seen:
                continue
            seen.add(event["id"])
            event_ingest(payload=event, raw=json.dumps(event), schedule=False)
            event_process(event_id=event["id"])
        if Order.objects.filter(pk__in=ids, status=Order.Status.PAID).count() == len(ids):
            return
        time.sleep(0.5)
    raise RuntimeError("the orders were not all paid in time")


def _measure(calls: list[Callable[[], Any]]) -> tuple[list[Any], float, float]:
    """(answers, CPU ms per call, statements per call)."""
    answers: list[Any] = []
    cpu = 0.0
    with _statements() as count:
        for call in calls:
            started = time.thread_time()
            answers.append(call())
            cpu += time.thread_time() - started
    n = max(1, len(calls))
    return answers, round(cpu / n * 1000, 2), round(count[0] / n, 2)


@benchmark("api")
def bench_api(quick: bool) -> dict[str, Any]:
    from pathlib import Path

    from django.conf import settings
    from django.test import Client

    count = int(os.environ.get("BENCH_API_ORDERS", "0")) or (60 if quick else 300)
    run = uuid.uuid4().hex[:10]
    port = _free_port()
    logs = Path(os.environ.get("BENCH_STACK_LOGS", f"/tmp/bench-api-{run}"))  # noqa: S108
    logs.mkdir(parents=True, exist_ok=True)
    command = [sys.executable, "-m", "stripe_emulator", "--port", str(port)]
    emulator = _start(command, dict(os.environ), logs / "emulator.log")
    saved = {name: getattr(settings, name) for name in ("STRIPE_API_BASE", "STRIPE_API_KEY")}
    try:
        _wait_http(port, "/_emulator/health", emulator, "the emulator")
        settings.STRIPE_API_BASE = f"http://127.0.0.1:{port}"  # type: ignore[misc]
        settings.STRIPE_API_KEY = API_KEY
        token, restaurants, riders, code = _setup(run)
        client = Client(HTTP_AUTHORIZATION=f"Token {token}")

        def create(i: int) -> Callable[[], Any]:
            body = {
                "restaurant": restaurants[i % len(restaurants)],
                "subtotal": 1500 + (i % 40) * 25,
                "delivery_fee": 299,
                "coupon": code if i % 3 == 0 else "",
            }

            def call() -> Any:
                response = client.post("/api/v1/orders/", body, content_type="application/json")
                if response.status_code != 201:
                    raise RuntimeError(f"create -> {response.status_code}: {response.content!r}")
                return response.json()

            return call

        def deliver(order_id: int) -> Callable[[], Any]:
            body = {"rider": riders[order_id % len(riders)]}

            def call() -> Any:
                response = client.post(
                    f"/api/v1/orders/{order_id}/deliver/", body, content_type="application/json"
                )
                if response.status_code != 200:
                    raise RuntimeError(f"deliver -> {response.status_code}: {response.content!r}")
                return response.json()

            return call

        since = int(time.time()) - 5
        _measure([create(i) for i in range(3)])  # warm-up: imports, URLs, prepared statements
        created, create_ms, create_statements = _measure([create(i) for i in range(count)])
        _pay_all(created, since)
        _, deliver_ms, deliver_statements = _measure(
            [deliver(answer["order"]["id"]) for answer in created]
        )
    finally:
        for name, value in saved.items():
            setattr(settings, name, value)
        _stop(emulator)
    return {
        "orders": count,
        "create_cpu_ms": create_ms,
        "create_statements": create_statements,
        "deliver_cpu_ms": deliver_ms,
        "deliver_statements": deliver_statements,
        "note": "per request, this process's thread CPU (test client, whole middleware stack "
        "and DRF); statements counted at psycopg; one order in three with a coupon",
        "load_average": round(os.getloadavg()[0], 2),
    }
