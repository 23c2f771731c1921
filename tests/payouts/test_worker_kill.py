"""For real: a Celery worker (a subprocess, against Redis and the test PostgreSQL database) is
SIGKILLed while it waits on Stripe's answer to the transfer create; a second worker, sent the
payout by the sweeper once the dead worker's lease expired, finishes it. The payout ends paid
with exactly one transfer at the emulator.

The emulator is slowed with its timeout chaos (the POST sleeps, then creates the transfer), so
the kill lands in the middle of the Stripe call; the second worker may look the transfer
up while that first request is still in flight (409 "key in use" -> unknown -> retry), or after
it completed (found, adopted): both paths must end with one transfer."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from django.db import connection

from config.celery import app as celery_app
from ledger.models import Transaction
from ops.bench import process_stop
from payouts.models import Payout
from payouts.services import payouts_enqueue, payouts_schedule, payouts_sweep
from stripe_emulator import ChaosConfig, EmulatorServer
from tests.payouts.conftest import API_KEY, TRANSACTIONAL_APPS
from tests.payouts.helpers import bal, key, make_payee
from tests.polling import wait_for

pytestmark = [
    pytest.mark.slow,
    pytest.mark.django_db(transaction=True, available_apps=TRANSACTIONAL_APPS),
]

REDIS_URL = "redis://127.0.0.1:6379/7"
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def queue(settings: Any) -> Iterator[str]:
    """A throw-away queue on Redis DB 7; this process publishes there (not eager)."""
    name = f"payouts-test-{uuid.uuid4().hex[:8]}"
    conf = celery_app.conf
    saved = (conf.broker_url, conf.task_always_eager)
    conf.broker_url, conf.task_always_eager = REDIS_URL, False
    _forget_connections()
    settings.PAYOUTS_QUEUE = name
    yield name
    conf.broker_url, conf.task_always_eager = saved
    _forget_connections()
    client = redis.Redis.from_url(REDIS_URL)
    client.delete(name, f"_kombu.binding.{name}", "unacked", "unacked_index")


def _forget_connections() -> None:
    """Make the app build its connection and producer pools again from `broker_url`."""
    celery_app._pool = None
    celery_app.amqp._producer_pool = None


def start_worker(emulator: EmulatorServer, queue: str, name: str) -> subprocess.Popen:
    database = connection.settings_dict
    env = {
        **os.environ,
        "DJANGO_ENV": "test",
        "DATABASE_URL": (
            f"postgres://{database['USER']}@{database['HOST'] or '127.0.0.1'}:"
            f"{database['PORT'] or 5432}/{database['NAME']}"
        ),
        "REDIS_URL": REDIS_URL,
        "CELERY_EAGER": "0",
        "STRIPE_API_BASE": emulator.url,
        "STRIPE_API_KEY": API_KEY,
        "STRIPE_TIMEOUT": "30",
        "STRIPE_MAX_NETWORK_RETRIES": "0",
        "PAYOUTS_QUEUE": queue,
        "PAYOUTS_LEASE_SECONDS": "2",
        "PAYOUTS_STUCK_SUBMITTING_SECONDS": "1",
        "LOG_LEVEL": "WARNING",
    }
    command = [sys.executable, "-m", "celery", "-A", "config", "worker", "--pool=solo"]
    command += ["-Q", queue, "-n", f"{name}-{uuid.uuid4().hex[:6]}@%h", "-l", "WARNING"]
    command += ["--without-gossip", "--without-mingle", "--without-heartbeat"]
    return subprocess.Popen(command, cwd=ROOT, env=env)


def test_sigkill_during_the_stripe_call_then_another_worker_finishes(
    emulator: EmulatorServer, queue: str, settings: Any
) -> None:
    # given: a reserved payout, and a Stripe that takes 4 s to create a transfer
    settings.PAYOUTS_STUCK_SECONDS = {"submitting": 1.0, "reserved": 1.0}
    payee = make_payee("restaurant", balance=7_777)
    payouts_schedule(payee_ids=[key(payee)], drive=False)
    payout = Payout.objects.get()
    assert payout.state == "reserved"
    emulator.set_chaos(
        ChaosConfig(
            api_timeout_rate=1.0,
            api_timeout_seconds=4.0,
            api_paths=("/v1/transfers",),
            api_methods=("POST",),
        )
    )
    first = start_worker(emulator, queue, "first")
    second: subprocess.Popen | None = None
    try:
        assert payouts_enqueue([payout.pk]) == 1
        # when: the first worker is inside the Stripe call, it is killed
        wait_for(lambda: emulator.api.stats["chaos_timeouts"] >= 1, 90, "the transfer POST")
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=10)
        assert first.returncode == -signal.SIGKILL
        emulator.set_chaos(ChaosConfig())
        payout.refresh_from_db()
        assert payout.state == "submitting" and payout.lease_token  # the dead worker's lease
        assert payout.transfer_id is None
        # and a second worker starts; the sweeper sends it the payout once the lease expired
        second = start_worker(emulator, queue, "second")
        wait_for(lambda: payouts_sweep() > 0, 30, "the sweeper to re-drive the payout")

        def paid() -> bool:
            payout.refresh_from_db()
            if payout.state == "submitting" and payout.next_attempt_at is not None:
                payouts_sweep()  # what beat does every minute
            return payout.state == "paid"

        wait_for(paid, 90, "the payout to be paid")
    finally:
        process_stop(first, timeout=20)
        if second is not None:
            process_stop(second, timeout=20)
    # then: paid, exactly one transfer at Stripe, the books add up for this payee
    assert emulator.transfer_counts() == {str(payout.pk): 1}
    assert payout.transfer_id and payout.attempts >= 1
    assert bal(payee.ledger_address) == 0 and bal(payout.account) == 0
    assert Transaction.objects.filter(reference=f"payout-settle:{payout.pk}").count() == 1
    # the dead worker's task wrote `submitting`; a different task recorded the transfer
    started_by = payout.events.get(to_state="submitting").actor
    finished_by = payout.events.get(to_state="submitted").actor
    assert started_by.startswith("task:") and finished_by.startswith("task:")
    assert started_by != finished_by
