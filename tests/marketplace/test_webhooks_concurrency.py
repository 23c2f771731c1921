"""The same event delivered 20 times at once: one inbox row, one scheduled task, one effect."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import pytest
from django.contrib.auth.models import Group
from django.db import connection
from django.test import Client

from stripe_gateway import services
from stripe_gateway.models import StripeEvent
from tests.marketplace.helpers import encode, make_event, post, signed, stripe_object

# Flush only the tables these tests touch: the ledger's tables refuse TRUNCATE by design.
TOUCHED_APPS = [
    "stripe_gateway",
    "marketplace",
    "audit",
    "django.contrib.auth",
    "django.contrib.contenttypes",
]
pytestmark = pytest.mark.django_db(transaction=True, available_apps=TOUCHED_APPS)


def run_concurrently(n: int, fn: Callable[[int], Any]) -> list[Any]:
    """Run fn(i) in n threads released together; each thread closes its DB connection."""
    barrier = threading.Barrier(n)
    results: list[Any] = [None] * n

    def worker(i: int) -> None:
        try:
            barrier.wait(timeout=10)
            results[i] = fn(i)
        except Exception as exc:  # surfaced by the assertions below
            results[i] = exc
        finally:
            connection.close()

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(n)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    return results


def test_twenty_concurrent_deliveries_make_one_row_and_one_effect(
    register_handler: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # given: a handler with a DB effect and a call counter; scheduling runs eagerly
    calls: list[str] = []
    lock = threading.Lock()

    def handler(event: StripeEvent) -> None:
        with lock:
            calls.append(event.stripe_id)
        Group.objects.get_or_create(name=f"effect:{event.data_object['id']}")

    register_handler("charge.succeeded", handler)
    scheduled: list[str] = []
    real_schedule = services.event_schedule

    def counting_schedule(stripe_id: str) -> None:
        with lock:
            scheduled.append(stripe_id)
        real_schedule(stripe_id)

    monkeypatch.setattr(services, "event_schedule", counting_schedule)
    event = make_event("charge.succeeded", stripe_object("charge"))
    body = encode(event)

    # when: 20 deliveries at once, each freshly signed like Stripe's retries
    responses = run_concurrently(20, lambda i: post(Client(), body, signed(body)))

    # then
    assert [getattr(r, "status_code", r) for r in responses] == [200] * 20
    duplicates = sorted(r.json()["duplicate"] for r in responses)
    assert duplicates == [False] + [True] * 19
    assert StripeEvent.objects.filter(stripe_id=event["id"]).count() == 1
    assert scheduled == [event["id"]]
    assert calls == [event["id"]]
    assert Group.objects.filter(name__startswith="effect:").count() == 1
    assert StripeEvent.objects.get().status == StripeEvent.Status.PROCESSED


def test_concurrent_workers_on_one_row_apply_it_once(register_handler: Any) -> None:
    # given: a stored event, and ten workers (task + sweeper + replays) racing for it
    calls: list[str] = []
    register_handler("charge.succeeded", lambda event: calls.append(event.stripe_id))
    event = make_event("charge.succeeded", stripe_object("charge"))
    services.event_ingest(payload=event, schedule=False)

    # when
    outcomes = run_concurrently(10, lambda i: services.event_process(event_id=event["id"]))

    # then
    statuses = sorted(getattr(o, "status", repr(o)) for o in outcomes)
    assert statuses == ["processed"] + ["skipped"] * 9
    assert calls == [event["id"]]
