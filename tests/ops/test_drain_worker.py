"""Drains with a real worker: a burst of webhook events, stored from several threads, is
processed by a few drain tasks of a real prefork worker, each row claimed once, with no
sweeper run (nothing is left for it).

Against a private redis-server and a real worker subprocess, as the broker outage drill."""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from django.db import connection

from benchmarks.stack import descendants
from ops.bench import process_stop
from stripe_gateway import services
from stripe_gateway.models import StripeEvent
from tests.ops.test_broker_outage import PrivateRedis, arrive, done, start_worker
from tests.ops.test_broker_outage import broker as broker  # the fixture, re-exported
from tests.payouts.conftest import TRANSACTIONAL_APPS
from tests.polling import wait_for

pytestmark = [
    pytest.mark.slow,
    pytest.mark.django_db(transaction=True, available_apps=TRANSACTIONAL_APPS),
]

THREADS, EACH = 4, 40


def arrive_from_threads() -> list[str]:
    """THREADS webhook requests at a time, EACH events each, as gunicorn's threads store them."""
    ids: list[str] = []
    lock = threading.Lock()

    def deliver() -> None:
        try:
            mine = arrive(EACH)
            with lock:
                ids.extend(mine)
        finally:
            connection.close()

    threads = [threading.Thread(target=deliver) for _ in range(THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(ids) == THREADS * EACH
    return ids


def test_a_burst_is_processed_by_a_few_drains_each_row_claimed_once(
    broker: PrivateRedis, settings: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # given: two drain slots; every message this process publishes is counted
    settings.STRIPE_EVENTS_DRAINS = 2
    settings.STRIPE_EVENTS_SWEEP_GRACE = 3600.0  # the sweeper would not re-drive anything
    published: list[str] = []
    real_publish = services.task_publish

    def counting_publish(name: str, queue: str, *args: Any, **kwargs: Any) -> None:
        published.append(name)
        real_publish(name, queue, *args, **kwargs)

    monkeypatch.setattr(services, "task_publish", counting_publish)

    # when: a burst arrives before any worker runs, then one starts (two processes)
    first = arrive_from_threads()
    assert published == [services.DRAIN_TASK] * 2  # one per slot: the gates stay closed
    worker = start_worker(broker, settings.STRIPE_EVENTS_QUEUE, concurrency=2)
    try:
        wait_for(lambda: done(first), 120, "the first burst to be processed by two drains")
        # and a second burst while the worker is running
        second = arrive_from_threads()
        wait_for(lambda: done(second), 120, "the second burst to be processed")
    finally:
        process_stop(worker)

    # then: every row processed by one claim, by fewer tasks than events
    rows = StripeEvent.objects.filter(stripe_id__in=first + second)
    assert sorted(set(rows.values_list("status", "attempts"))) == [("ignored", 1)]
    assert len(published) < len(first + second)
    assert set(published) == {services.DRAIN_TASK}


def test_a_worker_killed_mid_drain_leaves_nothing_behind(
    broker: PrivateRedis, settings: Any
) -> None:
    # given: many new events, a worker (leases of 2 s) draining them
    settings.STRIPE_EVENTS_DRAINS = 1
    settings.STRIPE_EVENTS_LEASE = 2.0
    # (enough of them, and polled often enough, that a fast machine is still mid-drain at the
    # kill: with 600 polled every 0.1 s, the drain once finished between two polls)
    ids = arrive(2000)
    queue = settings.STRIPE_EVENTS_QUEUE
    worker = start_worker(broker, queue, STRIPE_EVENTS_LEASE="2", STRIPE_EVENTS_DRAIN_BATCH="50")

    # when: it is SIGKILLed, pool process and all, in the middle of the drain
    def some_done() -> bool:
        return StripeEvent.objects.filter(stripe_id__in=ids, status="ignored").count() >= 20

    try:
        wait_for(some_done, 120, "the drain to start", every=0.005)
    finally:
        for pid in reversed(descendants(worker.pid)):  # the pool's processes, then the master
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        worker.wait(timeout=30)
    assert not done(ids), "the drain finished before the kill: nothing was tested"

    # then: a new worker and the sweeper (once the dead worker's leases expired) finish them
    time.sleep(2.5)
    second = start_worker(broker, queue, STRIPE_EVENTS_LEASE="2")
    try:
        services.events_sweep()  # what beat runs every 30 s

        def swept_and_done() -> bool:
            if done(ids):
                return True
            services.events_sweep()
            return False

        wait_for(swept_and_done, 120, "every event to be processed after the kill", every=1.0)
    finally:
        process_stop(second)
    rows = StripeEvent.objects.filter(stripe_id__in=ids)
    assert set(rows.values_list("status", flat=True)) == {"ignored"}
    assert max(rows.values_list("attempts", flat=True)) <= 2  # at most the dead lease, then one
