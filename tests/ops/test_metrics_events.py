"""Event metrics where they happen: a ledger write retried after a lock timeout (and one that
gives up), counted through ledger.retry's observer; a real Celery worker (prefork, two
children) serving the task metrics its children wrote, summed from the multiprocess
directory, behind the metrics token."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from django.conf import settings
from django.db import connection
from prometheus_client import REGISTRY
from prometheus_client.parser import text_string_to_metric_families

from config.celery import app as celery_app
from ledger import retry
from ledger.errors import LedgerBusy
from ledger.models import Posting
from ledger.services import PostingInput, transaction_post
from ops.bench import process_stop
from tests.polling import wait_for

ROOT = Path(__file__).resolve().parents[2]
POSTING = "ledger.posting._post_prepared"


def value(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


class TableLock:
    """Another session holding the postings table: every ledger write waits on it."""

    def __init__(self) -> None:
        db = connection.settings_dict
        self.conn = psycopg.connect(
            dbname=db["NAME"],
            user=db["USER"],
            password=db["PASSWORD"] or None,
            host=db["HOST"] or "127.0.0.1",
            port=db["PORT"] or 5432,
        )
        self.conn.execute(f"LOCK TABLE {Posting._meta.db_table} IN ACCESS EXCLUSIVE MODE")

    def release(self) -> None:
        self.conn.rollback()


class ReleaseOnFirstRetry:
    """An observer that lets the second attempt through: deterministic, whatever the load."""

    def __init__(self, lock: TableLock) -> None:
        self.lock = lock

    def retried(self, operation: str, sqlstate: str) -> None:
        self.lock.release()

    def finished(self, operation: str, seconds: float, outcome: str) -> None:
        pass


@pytest.fixture
def short_lock_timeout() -> Iterator[None]:
    with connection.cursor() as cursor:
        cursor.execute("SET lock_timeout = '100ms'")
    yield
    with connection.cursor() as cursor:
        cursor.execute("RESET lock_timeout")


@pytest.fixture
def table_lock(celery_eager: None) -> Iterator[TableLock]:
    transaction_post(postings=[PostingInput("world", "bank:platform", "USD/2", 100)])
    lock = TableLock()
    yield lock
    lock.conn.close()


@pytest.mark.django_db(transaction=True)
def test_a_write_that_waits_on_a_lock_is_retried_and_both_are_counted(
    table_lock, short_lock_timeout
):
    # given
    before = {
        "retries": value("eats_ledger_write_retries_total", operation=POSTING, sqlstate="55P03"),
        "ok": value("eats_ledger_writes_total", operation=POSTING, outcome="ok"),
        "count": value("eats_ledger_write_seconds_count", operation=POSTING),
        "sum": value("eats_ledger_write_seconds_sum", operation=POSTING),
    }
    releaser = ReleaseOnFirstRetry(table_lock)
    retry.observer_add(releaser)
    try:
        # when: the first attempt times out on the lock; the second gets through
        transaction_post(postings=[PostingInput("world", "bank:platform", "USD/2", 200)])
    finally:
        retry._observers.remove(releaser)

    # then: one retry (lock_not_available), one successful write that took the wait
    assert (
        value("eats_ledger_write_retries_total", operation=POSTING, sqlstate="55P03")
        - before["retries"]
        == 1
    )
    assert value("eats_ledger_writes_total", operation=POSTING, outcome="ok") - before["ok"] == 1
    assert value("eats_ledger_write_seconds_count", operation=POSTING) - before["count"] == 1
    assert 0.1 <= value("eats_ledger_write_seconds_sum", operation=POSTING) - before["sum"] < 10


@pytest.mark.django_db(transaction=True)
def test_a_write_that_never_gets_the_lock_is_counted_busy(table_lock, short_lock_timeout):
    # given
    retries = value("eats_ledger_write_retries_total", operation=POSTING, sqlstate="55P03")
    busy = value("eats_ledger_writes_total", operation=POSTING, outcome="busy")

    # when: the lock is held throughout
    with pytest.raises(LedgerBusy):
        transaction_post(postings=[PostingInput("world", "bank:platform", "USD/2", 200)])

    # then: every attempt but the last retried, and the call counted as busy
    assert (
        value("eats_ledger_write_retries_total", operation=POSTING, sqlstate="55P03") - retries
        == retry.MAX_ATTEMPTS - 1
    )
    assert value("eats_ledger_writes_total", operation=POSTING, outcome="busy") - busy == 1


# --- a real worker ------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def fetch(url: str, token: str | None) -> tuple[int, str]:
    request = urllib.request.Request(url)  # noqa: S310 (http on loopback)
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=5) as response:  # noqa: S310 (loopback)
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()
    except OSError:
        return 0, ""


def samples(text: str) -> dict[tuple[str, tuple], float]:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


@pytest.mark.slow
@pytest.mark.django_db
def test_a_worker_serves_the_task_metrics_of_its_children(tmp_path):
    # given: a worker with two prefork children, its own queue, a multiprocess directory
    # holding a stale file of a previous run, and its metrics endpoint
    queue = f"metrics-{uuid.uuid4().hex[:8]}"
    multiproc = tmp_path / "prometheus"
    multiproc.mkdir()
    (multiproc / "counter_999999.db").write_bytes(b"stale")
    port = free_port()
    url = f"http://127.0.0.1:{port}/metrics"
    token = "worker-metrics-token-0123456789"
    db = connection.settings_dict
    env = {
        **os.environ,
        "DJANGO_ENV": "test",
        "DATABASE_URL": (
            f"postgres://{db['USER']}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}"
        ),
        "REDIS_URL": settings.REDIS_URL,
        "CELERY_EAGER": "0",
        "PROMETHEUS_MULTIPROC_DIR": str(multiproc),
        "WORKER_METRICS_BIND": f"127.0.0.1:{port}",
        "METRICS_TOKEN": token,
        "LOG_LEVEL": "WARNING",
    }
    command = [sys.executable, "-m", "celery", "-A", "config", "worker", "-c", "2", "-Q", queue]
    command += ["-n", f"{queue}@%h", "--without-gossip", "--without-mingle", "-l", "WARNING"]
    worker = subprocess.Popen(command, cwd=ROOT, env=env, stderr=subprocess.PIPE, text=True)
    try:
        wait_for(lambda: fetch(url, token)[0] == 200, 60, "the worker's metrics endpoint")
        assert not (multiproc / "counter_999999.db").exists()  # emptied at start

        # when: six tasks run in the worker's children
        for _ in range(6):
            celery_app.send_task("ledger.seal", queue=queue)

        def seals() -> float:
            return samples(fetch(url, token)[1]).get(
                ("eats_celery_tasks_total", (("outcome", "success"), ("task", "ledger.seal"))), 0
            )

        wait_for(lambda: seals() == 6, 60, "six ledger.seal tasks counted")

        # then: the main process serves what the children wrote (it ran no task itself)
        scraped = samples(fetch(url, token)[1])
        assert scraped[("eats_celery_task_seconds_count", (("task", "ledger.seal"),))] == 6
        assert 0 < scraped[("eats_celery_task_seconds_sum", (("task", "ledger.seal"),))] < 60
        assert {p.name.split("_")[0] for p in multiproc.glob("*.db")} >= {"counter", "histogram"}
        # no product gauges here: the web's /metrics computes those once per scrape
        assert not [k for k in scraped if k[0].startswith("eats_stripe_events")]
        # the same token as the web's /metrics; nothing else is served
        assert fetch(url, None)[0] == 401
        assert fetch(url, "wrong")[0] == 401
        assert fetch(url.removesuffix("/metrics") + "/other", token)[0] == 404
    finally:
        process_stop(worker)
        import redis

        client = redis.Redis.from_url(settings.REDIS_URL)
        client.delete(queue)
        for key in client.scan_iter(f"_kombu.binding*.{queue}"):
            client.delete(key)
    stderr = worker.stderr.read() if worker.stderr else ""
    assert "Traceback" not in stderr, stderr[-3000:]
