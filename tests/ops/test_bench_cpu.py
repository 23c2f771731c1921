"""The stack benchmark's CPU accounting (benchmarks/stack.py): /proc readings per process kind."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from benchmarks.stack import (
    CpuMeter,
    _tasks_done,
    cpu_seconds,
    descendants,
    postgres_backends,
)


def _burn(seconds: float) -> None:
    end = time.process_time() + seconds
    while time.process_time() < end:
        pass


def test_cpu_of_this_process_grows_with_the_work_it_does() -> None:
    before = cpu_seconds(os.getpid())
    _burn(0.2)
    after = cpu_seconds(os.getpid())
    assert before is not None and after is not None
    assert 0.15 <= after - before <= 1.0


def test_a_gone_process_reads_as_none_and_children_are_found() -> None:
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        assert child.pid in descendants(os.getpid())
    finally:
        child.kill()
        child.wait()
    assert cpu_seconds(child.pid) is None


def test_the_meter_counts_from_its_start_and_keeps_what_it_last_saw() -> None:
    meter = CpuMeter(groups={"me": lambda: [os.getpid()], "nobody": lambda: []})
    _burn(0.1)  # before the start: not counted
    meter.start()
    _burn(0.2)
    meter.sample()
    totals = meter.totals()
    assert 0.15 <= totals["me"] <= 1.0
    assert totals["nobody"] == 0


def test_backends_of_an_unknown_database_are_none() -> None:
    assert postgres_backends("no_such_database_s20s") == []


def test_task_runs_are_counted_from_the_worker_log(tmp_path: Path) -> None:
    # given: a worker log at INFO (lines as Celery 5 writes them)
    log = tmp_path / "celery-2.log"
    log.write_text(
        "[2026-12-04 16:00:00,000: INFO/MainProcess] Task stripe_gateway.tasks.stripe_events_"
        "drain[1f0c] received\n"
        "[2026-12-04 16:00:00,010: INFO/ForkPoolWorker-1] Task stripe_gateway.tasks.stripe_"
        "events_drain[1f0c] succeeded in 0.01s: 3\n"
        "[2026-12-04 16:00:00,020: INFO/ForkPoolWorker-2] Task marketplace.webhooks.tasks."
        "stripe_event_process[2a] retry: Retry in 31s\n"
        "[2026-12-04 16:00:00,030: ERROR/ForkPoolWorker-2] Task stripe_gateway.tasks.stripe_"
        "events_drain[3b] raised unexpected: OperationalError()\n"
    )

    # then: finished runs only, by task
    assert _tasks_done(log) == {
        "stripe_gateway.tasks.stripe_events_drain": 2,
        "marketplace.webhooks.tasks.stripe_event_process": 1,
    }
    assert _tasks_done(tmp_path / "missing.log") == {}


def test_the_stripe_calls_counted_are_the_apis_not_the_control_endpoints(
    emulator_factory: Any,
) -> None:
    """`stripe_calls_per_order` reads the emulator's API request count: a Stripe call adds
    one, reading the count itself (a control endpoint) adds none."""
    from benchmarks.stack import _emulator_requests, _Stack
    from stripe_gateway.client import StripeGateway

    server = emulator_factory(point_app=False)
    stack = _Stack(run="t", database="", env={}, logs=Path("."), emulator_port=server.port)
    gateway = StripeGateway(api_key="sk_test_count", api_base=server.url, max_network_retries=0)

    before = _emulator_requests(stack)
    again = _emulator_requests(stack)
    gateway.balance_retrieve()
    after = _emulator_requests(stack)

    assert (again - before, after - before) == (0, 1)
