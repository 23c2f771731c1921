"""Drill: Redis (the broker) goes away for 20 s while events keep arriving; the Celery
worker rides it out and, once Redis is back and the sweeper has run (as beat does every
30 s), every event is processed, with no restart by hand.

Everything runs against a private redis-server on a free port (the shared one is never
touched) and a real worker subprocess (prefork, as in production) on the test database."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from django.db import connection

from config.celery import app as celery_app
from ops import liveness
from ops.bench import process_stop
from stripe_gateway import services
from stripe_gateway.models import StripeEvent
from tests.payouts.conftest import TRANSACTIONAL_APPS
from tests.polling import wait_for

pytestmark = [
    pytest.mark.slow,
    pytest.mark.django_db(transaction=True, available_apps=TRANSACTIONAL_APPS),
]

ROOT = Path(__file__).resolve().parents[2]
OUTAGE_SECONDS = 20


class PrivateRedis:
    def __init__(self, tmp: Path) -> None:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.tmp = tmp
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.process: subprocess.Popen | None = None

    def start(self) -> None:
        binary = shutil.which("redis-server")
        assert binary, "redis-server is needed (it runs the shared Redis of `make test`)"
        self.process = subprocess.Popen(
            [
                binary,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self.tmp),
            ],
            stdout=subprocess.DEVNULL,
        )
        wait_for(self.ping, 10, "redis-server to start")

    def ping(self) -> bool:
        try:
            return bool(redis.Redis.from_url(self.url, socket_timeout=0.5).ping())
        except redis.RedisError:
            return False

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.kill()  # an outage, not a shutdown
            self.process.wait(timeout=10)


@pytest.fixture
def broker(tmp_path: Path, settings: Any) -> Iterator[PrivateRedis]:
    server = PrivateRedis(tmp_path)
    server.start()
    conf = celery_app.conf
    saved = (conf.broker_url, conf.task_always_eager)
    conf.broker_url, conf.task_always_eager = server.url, False
    _forget_connections()
    settings.STRIPE_EVENTS_QUEUE = f"drill-{uuid.uuid4().hex[:8]}"
    settings.STRIPE_EVENTS_SWEEP_GRACE = 0.0  # rows are due for the sweeper at once
    yield server
    conf.broker_url, conf.task_always_eager = saved
    _forget_connections()
    server.stop()


def _forget_connections() -> None:
    celery_app._pool = None
    celery_app.amqp._producer_pool = None


def start_worker(
    broker: PrivateRedis, queue: str, concurrency: int = 1, **extra_env: str
) -> subprocess.Popen:
    database = connection.settings_dict
    env = {
        **os.environ,
        "DJANGO_ENV": "test",
        "DATABASE_URL": (
            f"postgres://{database['USER']}@{database['HOST'] or '127.0.0.1'}:"
            f"{database['PORT'] or 5432}/{database['NAME']}"
        ),
        "REDIS_URL": broker.url,
        "CELERY_EAGER": "0",
        "STRIPE_EVENTS_QUEUE": queue,
        "LOG_LEVEL": "WARNING",
        "CELERY_LIVENESS_FILE": str(broker.tmp / "worker.alive"),
        **extra_env,
    }
    command = [sys.executable, "-m", "celery", "-A", "config", "worker", "-c", str(concurrency)]
    command += ["-Q", queue, "-n", f"drill-{uuid.uuid4().hex[:6]}@%h", "-l", "WARNING"]
    # as in production: gossip, mingle and heartbeats on (they reconnect too)
    return subprocess.Popen(command, cwd=ROOT, env=env, stderr=subprocess.PIPE, text=True)


def arrive(n: int) -> list[str]:
    """n events the webhook view stores (and tries to schedule) as they arrive."""
    ids = []
    for _ in range(n):
        stripe_id = f"evt_drill_{uuid.uuid4().hex[:16]}"
        services.event_ingest(
            payload={
                "id": stripe_id,
                "type": "drill.unknown_type",
                "created": int(time.time()),
                "data": {"object": {}},
            }
        )
        ids.append(stripe_id)
    return ids


def done(ids: list[str]) -> bool:
    return StripeEvent.objects.filter(stripe_id__in=ids, status="ignored").count() == len(ids)


def test_the_worker_rides_out_a_20_second_broker_outage(broker: PrivateRedis, settings: Any):
    worker = start_worker(broker, settings.STRIPE_EVENTS_QUEUE)
    try:
        # given: a worker processing events
        before = arrive(5)
        wait_for(lambda: done(before), 90, "the first events to be processed")

        # when: Redis dies for 20 s while events keep arriving (scheduling fails, the rows
        # stay), then comes back empty (no persistence: every message of the outage is lost)
        broker.stop()
        during: list[str] = []
        started = time.monotonic()
        while time.monotonic() - started < OUTAGE_SECONDS:
            during += arrive(2)
            time.sleep(1)
        assert worker.poll() is None, "the worker died during the outage"
        # the chart's liveness probe passes throughout: a broker outage is not a reason to
        # restart the worker
        assert liveness.main(["liveness", str(broker.tmp / "worker.alive"), "30"]) == 0
        broker.start()
        services.events_sweep()  # what beat runs every 30 s

        # then: everything is processed by the same worker process, never restarted
        wait_for(lambda: done(during), 120, "the events of the outage to be processed")
        after = arrive(3)
        wait_for(lambda: done(after), 60, "events after the outage")
        assert worker.poll() is None
        assert StripeEvent.objects.filter(status="ignored").count() == len(before + during + after)
    finally:
        process_stop(worker)
        stderr = worker.stderr.read() if worker.stderr else ""
    assert "Unrecoverable error" not in stderr, stderr[-3000:]
