"""Celery beat as a true singleton: a Redis lock with a TTL, renewed by the beat that holds it.

Two beats (a rollout that overlaps, a pod stuck terminating on a partitioned node, `docker
compose up --scale beat=2`, a second `make run` on the same Redis) would each send every
periodic task. With `CELERY_BEAT_SCHEDULER = "ops.beat:SingletonScheduler"` every beat
process competes for one Redis key:

- the holder renews the key's TTL on every tick (at least every TTL/3) and sends the due
  tasks; just before each send it checks the key still holds its token (a process paused
  past the TTL finds it gone and sends nothing);
- any other beat stands by: it sends nothing and tries again every TTL/3;
- a holder that stops cleanly deletes the key (the standby takes over at its next try); one
  that dies (SIGKILL, node lost) leaves the key to expire: the standby takes over within
  TTL + TTL/3;
- the holder records when it last sent each entry in a Redis hash; a beat that takes over
  loads those times, so a daily entry (the nightly reconciliation) that the previous holder
  already sent today is not sent again, and an interval entry keeps its rhythm.

Redis unreachable: nobody holds the lock (nothing could be sent to the broker anyway); the
beats retry. A Redis lock is not a fence against every failure (a pause between the check
and the publish, a Redis failover losing the key): the periodic tasks are sweepers and
scheduled jobs that take their own database locks, so a rare duplicate is harmless; what
the lock removes is the permanent duplicate of two beats both running.

Settings (Celery conf, `CELERY_` prefix in Django settings): `beat_lock_url` (default: the
broker URL), `beat_lock_key` (default `eats:beat:lock`), `beat_lock_ttl` seconds (default
30). Imports Celery and redis-py only (no Django), so a bare Celery app can use it.
"""

from __future__ import annotations

import contextlib
import glob
import logging
import os
import socket
import uuid
from datetime import UTC, datetime
from typing import Any

import redis
from celery.beat import PersistentScheduler, ScheduleEntry
from celery.utils.time import maybe_make_aware

logger = logging.getLogger(__name__)

DEFAULT_KEY = "eats:beat:lock"
DEFAULT_TTL = 30.0

# Take the key if free, renew it if ours; 1 when we hold it afterwards, else 0.
_HOLD = """
local v = redis.call('GET', KEYS[1])
if not v then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return 1
end
if v == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
return 0
"""
# Delete the key only if it is still ours.
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""


class BeatLock:
    """A Redis lock with a TTL: `hold()` takes or renews it, `held()` checks it, `release()`
    gives it up. Every call answers False (and logs) when Redis is unreachable."""

    def __init__(self, client: redis.Redis, key: str, ttl: float, token: str) -> None:
        self.client = client
        self.key = key
        self.ttl_ms = int(ttl * 1000)
        self.token = token
        self._hold = client.register_script(_HOLD)
        self._release = client.register_script(_RELEASE)

    def hold(self) -> bool:
        try:
            return bool(self._hold(keys=[self.key], args=[self.token, self.ttl_ms]))
        except redis.RedisError as exc:
            logger.warning("beat: cannot reach Redis for the lock (%s)", exc)
            return False

    def held(self) -> bool:
        try:
            return self._get() == self.token
        except redis.RedisError as exc:
            logger.warning("beat: cannot reach Redis for the lock (%s)", exc)
            return False

    def holder(self) -> str | None:
        try:
            return self._get()
        except redis.RedisError:
            return None

    def _get(self) -> str | None:
        value: Any = self.client.get(self.key)
        return _text(value) if value is not None else None

    def release(self) -> None:
        try:
            self._release(keys=[self.key], args=[self.token])
        except redis.RedisError as exc:
            logger.warning("beat: could not release the lock (%s); it expires by itself", exc)


class SingletonScheduler(PersistentScheduler):
    """PersistentScheduler that sends only while it holds the beat lock (module docstring)."""

    schedule_filename: str  # set by PersistentScheduler.__init__ (missing from the stubs)

    def __init__(self, app: Any, *args: Any, **kwargs: Any) -> None:
        conf = app.conf
        ttl = float(conf.get("beat_lock_ttl") or DEFAULT_TTL)
        url = conf.get("beat_lock_url") or conf.broker_url
        client = redis.Redis.from_url(url, socket_timeout=5, socket_connect_timeout=5)
        token = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self.lock = BeatLock(client, conf.get("beat_lock_key") or DEFAULT_KEY, ttl, token)
        self.last_run_key = f"{self.lock.key}:last-run"
        # Renew (or retry) three times per TTL: one missed renewal does not lose the lock.
        self.renew_every = ttl / 3
        self.holding = False
        self.standing_by = False
        super().__init__(app, *args, **kwargs)
        # A float (the stubs say int): beat's loop sleeps whatever tick() returns.
        self.max_interval = min(float(self.max_interval or ttl), self.renew_every)  # type: ignore[assignment]

    def tick(self, *args: Any, **kwargs: Any) -> float:
        self._touch()
        if not self.lock.hold():
            if self.holding:
                logger.warning("beat: lost the lock; standing by (holder: %s)", self.lock.holder())
            elif not self.standing_by:
                logger.info("beat: standing by, the lock is held by %s", self.lock.holder())
            self.holding, self.standing_by = False, True
            return self.renew_every
        if not self.holding:
            logger.info("beat: holding the lock (%s); sending the schedule", self.lock.token)
            self._load_last_runs()
        self.holding, self.standing_by = True, False
        return min(super().tick(*args, **kwargs), self.renew_every)

    def _touch(self) -> None:
        """Mark the loop alive for the liveness probe (`ops.liveness` on the schedule file):
        a standby beat never rewrites its schedule, and must not be restarted for that."""
        name = str(self.schedule_filename)
        for path in [name, *glob.glob(glob.escape(name) + ".*")]:
            with contextlib.suppress(OSError):
                os.utime(path)

    def apply_entry(self, entry: ScheduleEntry, producer: Any = None) -> None:
        # The fence: the lock was renewed at the start of this tick; check it is still ours
        # right before publishing (a pause longer than the TTL in between would have lost it).
        if not self.lock.held():
            logger.warning("beat: not sending %s: the lock is no longer ours", entry.name)
            self.holding = False
            return
        super().apply_entry(entry, producer=producer)
        sent = self.schedule.get(str(entry.name), entry).last_run_at
        if sent is None:
            return
        try:
            self.lock.client.hset(self.last_run_key, str(entry.name), sent.timestamp())
        except redis.RedisError as exc:
            logger.warning("beat: could not record the last run of %s (%s)", entry.name, exc)

    def _load_last_runs(self) -> None:
        """Start from the previous holder's send times, so a takeover neither repeats an
        entry it already sent nor restarts the intervals."""
        try:
            stored: dict[Any, Any] = self.lock.client.hgetall(self.last_run_key)  # type: ignore[assignment]
        except redis.RedisError as exc:
            logger.warning("beat: could not load the last runs (%s)", exc)
            return
        tz = self.app.timezone
        for raw_name, raw_ts in stored.items():
            entry = self.schedule.get(_text(raw_name))
            if entry is None:
                continue
            previous = datetime.fromtimestamp(float(raw_ts), tz=UTC).astimezone(tz)
            if entry.last_run_at is None or previous > maybe_make_aware(entry.last_run_at, tz):
                entry.last_run_at = previous
        self._heap = None  # re-read every entry's next run

    def close(self) -> None:
        try:
            super().close()
        finally:
            if self.holding:
                self.lock.release()
                logger.info("beat: released the lock")
            self.holding = False
            self.lock.client.close()

    @property
    def info(self) -> str:
        return f"{super().info}\n    . lock -> {self.lock.key} (ttl {self.lock.ttl_ms / 1000:g}s)"


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
