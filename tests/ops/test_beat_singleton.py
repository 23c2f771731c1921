"""Beat is a singleton by a Redis lock (ops/beat.py): two beat schedulers against one Redis,
only the holder sends; a holder that dies without a word is replaced once its lock expires;
one that stops cleanly hands over at once; a takeover does not repeat what the previous
holder already sent. Real Redis (the test's own keys and queue), real publishes (counted in
the queue), real `celery beat` processes for the kill drill."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import redis
from celery import Celery
from django.conf import settings

from ops import liveness
from ops.beat import SingletonScheduler
from tests.polling import wait_for

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def names() -> Iterator[dict[str, str]]:
    suffix = uuid.uuid4().hex[:8]
    keys = {"lock": f"test:beat:{suffix}", "queue": f"test-beat-{suffix}"}
    yield keys
    client = redis.Redis.from_url(settings.REDIS_URL)
    client.delete(keys["lock"], f"{keys['lock']}:last-run", keys["queue"])
    for key in client.scan_iter(f"_kombu.binding*.{keys['queue']}"):  # the queue's bindings
        client.delete(key)
    client.close()


def make_app(names: dict[str, str], ttl: float, schedule: dict[str, Any]) -> Celery:
    app = Celery("beat-test", broker=settings.REDIS_URL, set_as_current=False)
    app.conf.update(
        timezone="UTC",
        beat_lock_key=names["lock"],
        beat_lock_ttl=ttl,
        beat_schedule={
            name: {"task": "beat.test", "schedule": every, "options": {"queue": names["queue"]}}
            for name, every in schedule.items()
        },
    )
    return app


def sent(names: dict[str, str]) -> int:
    return int(redis.Redis.from_url(settings.REDIS_URL).llen(names["queue"]))


def ticks(scheduler: SingletonScheduler, names: dict[str, str], seconds: float) -> int:
    """Tick for `seconds` (as beat's loop would, but without sleeping the whole interval)
    and return how many messages this scheduler published."""
    count = 0
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        before = sent(names)
        scheduler.tick()
        count += sent(names) - before
        time.sleep(0.02)
    return count


def test_two_schedulers_against_one_redis_only_the_holder_sends(names, tmp_path):
    # given: two beats with an entry due every 0.1 s
    app = make_app(names, ttl=1.5, schedule={"fast": 0.1})
    a = SingletonScheduler(app, schedule_filename=str(tmp_path / "a"))
    b = SingletonScheduler(app, schedule_filename=str(tmp_path / "b"))
    try:
        # when: they tick side by side for a second
        sent_by = {"a": 0, "b": 0}
        deadline = time.monotonic() + 1.0
        while time.monotonic() < deadline:
            sent_by["a"] += ticks(a, names, 0.05)
            sent_by["b"] += ticks(b, names, 0.05)

        # then: a took the lock first and sent the schedule; b sent nothing
        assert a.holding and not b.holding
        assert sent_by["b"] == 0
        assert 5 <= sent_by["a"] <= 11
        assert redis.Redis.from_url(settings.REDIS_URL).get(names["lock"]).decode() == (
            a.lock.token
        )
        # both keep a short loop so that the holder renews and the standby retries in time
        assert a.max_interval == b.max_interval == pytest.approx(0.5)
        # the standby's loop still marks it alive for the liveness probe
        for path in tmp_path.glob("b*"):
            os.utime(path, (0, 0))
        b.tick()
        assert liveness.newest_age(str(tmp_path / "b")) < 5
    finally:
        a.close()
        b.close()


def test_a_holder_that_dies_is_replaced_after_the_ttl_and_cannot_send_when_it_wakes(
    names, tmp_path
):
    # given: a holds the lock
    app = make_app(names, ttl=1.0, schedule={"fast": 0.1})
    a = SingletonScheduler(app, schedule_filename=str(tmp_path / "a"))
    b = SingletonScheduler(app, schedule_filename=str(tmp_path / "b"))
    assert ticks(a, names, 0.3) > 0
    died = time.monotonic()

    # when: a stops ticking (frozen, or killed: it never releases); b keeps trying
    first_send = None
    while time.monotonic() - died < 3.0 and first_send is None:
        if ticks(b, names, 0.05):
            first_send = time.monotonic() - died

    # then: b sent only once a's lock had expired, and it did
    assert first_send is not None, "b never took over"
    assert 0.9 <= first_send <= 1.0 + 0.5
    assert b.holding

    # when: a wakes up (a paused process, a partitioned node coming back)
    sent_by_a = ticks(a, names, 0.5)

    # then: it stands by; b still holds
    assert sent_by_a == 0
    assert not a.holding
    assert ticks(b, names, 0.3) > 0
    a.close()
    b.close()


def test_a_holder_that_stops_cleanly_hands_over_at_once(names, tmp_path):
    # given
    app = make_app(names, ttl=30.0, schedule={"fast": 0.1})
    a = SingletonScheduler(app, schedule_filename=str(tmp_path / "a"))
    b = SingletonScheduler(app, schedule_filename=str(tmp_path / "b"))
    assert ticks(a, names, 0.3) > 0
    assert ticks(b, names, 0.3) == 0

    # when: a shuts down (SIGTERM: beat closes its scheduler)
    a.close()

    # then: the lock is gone and b sends at its next tick, not 30 s later
    assert redis.Redis.from_url(settings.REDIS_URL).get(names["lock"]) is None
    assert ticks(b, names, 0.3) > 0
    b.close()


def test_the_send_is_fenced_by_the_lock(names, tmp_path):
    # given: a holds the lock, then loses it between its renewal and the send (a pause
    # longer than the TTL); c has taken it meanwhile
    app = make_app(names, ttl=30.0, schedule={"fast": 0.1})
    a = SingletonScheduler(app, schedule_filename=str(tmp_path / "a"))
    assert ticks(a, names, 0.2) > 0
    client = redis.Redis.from_url(settings.REDIS_URL)
    client.set(names["lock"], "c:1:other")
    before = sent(names)

    # when: a publishes what its (stale) tick found due
    a.apply_entry(a.schedule["fast"], producer=a.producer)

    # then: nothing was sent, and a knows it no longer holds
    assert sent(names) == before
    assert not a.holding
    a.close()
    assert client.get(names["lock"]) == b"c:1:other"  # a's close does not delete c's lock


def test_a_takeover_does_not_repeat_what_the_previous_holder_sent(names, tmp_path):
    # given: an hourly entry, overdue in both beats' own schedule files (b has been standing
    # by for two hours); a holds the lock and sends it
    app = make_app(names, ttl=30.0, schedule={"hourly": 3600.0})
    a = SingletonScheduler(app, schedule_filename=str(tmp_path / "a"))
    b = SingletonScheduler(app, schedule_filename=str(tmp_path / "b"))
    for scheduler in (a, b):
        scheduler.schedule["hourly"].last_run_at = app.now() - timedelta(hours=2)
        scheduler._heap = None
    assert ticks(a, names, 0.3) == 1
    assert ticks(b, names, 0.3) == 0

    # when: a stops and b takes over
    a.close()
    sent_by_b = ticks(b, names, 0.5)

    # then: b starts from a's send time: the hourly entry is not sent again
    assert b.holding
    assert sent_by_b == 0
    assert b.schedule["hourly"].last_run_at > app.now() - timedelta(minutes=1)
    b.close()


def test_redis_unreachable_means_nobody_sends(names, tmp_path):
    # given: a beat whose lock lives on a Redis that is not there
    app = make_app(names, ttl=3.0, schedule={"fast": 0.1})
    app.conf.beat_lock_url = "redis://127.0.0.1:1/0"
    a = SingletonScheduler(app, schedule_filename=str(tmp_path / "a"))

    # when
    delay = a.tick()

    # then: it stands by and retries within a third of the TTL
    assert not a.holding
    assert delay == pytest.approx(1.0)
    assert sent(names) == 0
    a.close()


@pytest.mark.slow
def test_two_beat_processes_one_sends_and_the_other_takes_over_when_it_is_killed(names, tmp_path):
    # given: two real `celery beat` processes on one Redis, a 3 s lock
    env = {
        **os.environ,
        "REDIS_URL": settings.REDIS_URL,
        "BEAT_LOCK_KEY": names["lock"],
        "BEAT_LOCK_TTL": "3",
        "BEAT_QUEUE": names["queue"],
    }
    client = redis.Redis.from_url(settings.REDIS_URL)

    def senders() -> list[str]:
        # each message names the process that published it: "gen<pid>@<host>"
        return [
            json.loads(raw)["headers"]["origin"].split("@")[0].removeprefix("gen")
            for raw in reversed(client.lrange(names["queue"], 0, -1))
        ]

    def beat(name: str) -> subprocess.Popen:
        return subprocess.Popen(
            [
                sys.executable,
                "-m",
                "celery",
                "-A",
                "tests.ops.beat_app",
                "beat",
                "--loglevel",
                "INFO",
                "--schedule",
                str(tmp_path / name),
            ],
            cwd=ROOT,
            env=env,
            stdout=open(tmp_path / f"{name}.log", "wb"),
            stderr=subprocess.STDOUT,
        )

    first = beat("first")
    second = None
    try:
        wait_for(lambda: str(first.pid) in senders(), 30, "the first beat to send")
        second = beat("second")
        wait_for(
            lambda: b"standing by" in (tmp_path / "second.log").read_bytes(),
            30,
            "the second beat to stand by",
        )

        # when: both run for 3 s
        time.sleep(3)

        # then: only the first has sent
        assert set(senders()) == {str(first.pid)}

        # when: the first is killed (no clean shutdown: its lock stays until the TTL)
        count_before_kill = len(senders())
        first.send_signal(signal.SIGKILL)
        first.wait(10)
        killed = time.monotonic()
        wait_for(lambda: str(second.pid) in senders(), 30, "the second beat to take over")
        took_over = time.monotonic() - killed

        # then: after the lock expired (the TTL less at most one renewal period), the
        # second sends, and nobody else
        assert took_over >= 3 - 1 - 0.5
        assert set(senders()[count_before_kill:]) == {str(second.pid)}

        # when: the second stops cleanly
        second.send_signal(signal.SIGTERM)
        assert second.wait(20) == 0

        # then: it released the lock
        assert client.get(names["lock"]) is None
    finally:
        for process in (first, second):
            if process is not None and process.poll() is None:
                process.kill()
                process.wait(10)


def test_every_beat_the_project_starts_uses_the_singleton_scheduler(tmp_path):
    # given: the project's Celery app (Django settings)
    from celery import beat

    from config.celery import app as project_app

    # when: what `celery -A config beat` builds (celery.apps.beat.Beat reads beat_scheduler)
    scheduler_cls = project_app.Beat().scheduler_cls
    scheduler = beat.Service(
        project_app, scheduler_cls=scheduler_cls, schedule_filename=str(tmp_path / "s")
    ).get_scheduler(lazy=True)

    # then: and nothing overrides it on a command line (make run, compose, the chart)
    assert isinstance(scheduler, SingletonScheduler)
    scheduler.lock.client.close()
    for path in (
        "scripts/run_all.sh",
        "docker-compose.yml",
        "deploy/helm/eats/templates/beat.yaml",
    ):
        text = (ROOT / path).read_text()
        assert " beat" in text or '"beat"' in text
        assert "--scheduler" not in text and '"-S"' not in text and " -S " not in text
