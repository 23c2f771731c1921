"""Webhook delivery: a background queue that POSTs signed events to configured endpoints.

Never called inside an API request: the state hands each new event to `enqueue`, which only
appends to a queue; a pool of `threads` worker threads delivers (1 by default: deliveries
in queue order, one at a time). With several threads, deliveries overlap and may arrive out
of order, even for one endpoint, as on Stripe, which guarantees no order (receivers must be
order-independent); each thread keeps one HTTP/1.1 keep-alive connection per endpoint host
(a connection the receiver closed between two deliveries is reopened once, at once: at worst
a duplicate delivery, which Stripe also makes). Each attempt is signed afresh, exactly as
Stripe does: `Stripe-Signature: t=<unix ts>,v1=<hex HMAC-SHA256(secret, f"{t}.{body}")>`,
the `whsec_...` secret used as raw UTF-8 bytes. Non-2xx answers and connection errors are
retried with exponential backoff (`retry_backoff_seconds * 2**attempt`, up to
`max_attempts`). Chaos (duplicates, shuffling, delay, drops) follows `ChaosConfig`.
"""

from __future__ import annotations

import hashlib
import heapq
import hmac
import http.client
import itertools
import json
import random
import threading
import time
import urllib.parse
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .config import ChaosConfig


def sign(payload: str, secret: str, timestamp: int) -> str:
    """The Stripe-Signature header value for `payload` (same as stripe-python's helper)."""
    mac = hmac.new(secret.encode("utf-8"), f"{timestamp}.{payload}".encode(), hashlib.sha256)
    return f"t={timestamp},v1={mac.hexdigest()}"


@dataclass
class Endpoint:
    url: str
    secret: str
    connect: bool = False  # receives connected-account events (those with `account`)
    enabled_events: tuple[str, ...] = ("*",)  # event types it receives ("*" = all)
    endpoint_id: str | None = None  # the we_ object, for endpoints created through the API

    def wants(self, event_type: str) -> bool:
        return "*" in self.enabled_events or event_type in self.enabled_events


@dataclass(order=True)
class _Job:
    due: float
    seq: int
    event_id: str = field(compare=False)
    event_type: str = field(compare=False)
    body: str = field(compare=False)
    endpoint: Endpoint = field(compare=False)
    attempt: int = field(compare=False, default=1)
    original: bool = field(compare=False, default=True)  # False for chaos duplicates
    drop: bool = field(compare=False, default=False)  # chaos: drop the first attempt


@dataclass
class Delivery:
    """One attempt, kept in `WebhookDispatcher.log` for tests and the stats endpoint."""

    event_id: str
    event_type: str
    url: str
    attempt: int
    status: int | None  # HTTP status, None on a connection error or a drop
    dropped: bool = False
    duplicate: bool = False
    at: float = 0.0


class WebhookDispatcher:
    """Queue + worker threads delivering events to endpoints, with chaos and retries."""

    def __init__(
        self,
        *,
        chaos: ChaosConfig,
        max_attempts: int = 5,
        retry_backoff_seconds: float = 0.05,
        timeout_seconds: float = 5.0,
        on_result: Callable[[str, bool], None] | None = None,
        log_size: int = 100_000,
        threads: int = 1,
    ) -> None:
        if threads < 1:
            raise ValueError("threads must be at least 1")
        self.threads = threads
        self.endpoints: list[Endpoint] = []
        self.chaos = chaos
        # Decisions made when an event is queued (drop, duplicates) use `rng`, in event order,
        # so a seed reproduces them; shuffle picks depend on timing and use their own RNG.
        self.rng = random.Random(chaos.seed + 1)
        self.shuffle_rng = random.Random(chaos.seed + 2)
        self.max_attempts = max_attempts
        self.retry_backoff_seconds = retry_backoff_seconds
        self.timeout_seconds = timeout_seconds
        self.on_result = on_result
        self.log: deque[Delivery] = deque(maxlen=log_size)
        self.stats: dict[str, int] = {
            "enqueued": 0,
            "attempts": 0,
            "delivered": 0,
            "failed_attempts": 0,
            "gave_up": 0,
            "dropped": 0,
            "duplicates": 0,
            "redelivered": 0,
        }
        # One lock, two conditions: delivery threads wait on `_cond` for work, `flush` waits
        # on `_idle` for the queue to empty. A finished delivery wakes only `flush`, and a
        # queued job one thread per job, instead of every waiting thread for every delivery
        # (four threads woken, three going back to sleep: a fifth of the emulator's CPU in
        # `bench stack`).
        lock = threading.Lock()
        self._cond = threading.Condition(lock)
        self._idle = threading.Condition(lock)
        self._heap: list[_Job] = []
        self._window: list[_Job] = []
        self._dropped: list[_Job] = []
        self._gave_up: list[_Job] = []
        self._in_flight = 0
        self._seq = itertools.count()
        self._stopping = False
        self._paused = False
        self._workers: list[threading.Thread] = []
        self._local = threading.local()  # each worker's keep-alive connections

    # -- configuration ---------------------------------------------------------------------

    def set_chaos(self, chaos: ChaosConfig, *, reseed: bool) -> None:
        with self._cond:
            self.chaos = chaos
            if reseed:
                self.rng = random.Random(chaos.seed + 1)
                self.shuffle_rng = random.Random(chaos.seed + 2)
            self._cond.notify_all()

    def add_endpoint(self, url: str, secret: str, *, connect: bool = False) -> None:
        with self._cond:
            self.endpoints.append(Endpoint(url, secret, connect))

    def upsert_api_endpoint(self, obj: dict[str, Any]) -> None:
        """Register (or update) an endpoint created through /v1/webhook_endpoints."""
        with self._cond:
            for endpoint in self.endpoints:
                if endpoint.endpoint_id == obj["id"]:
                    endpoint.url = obj["url"]
                    endpoint.enabled_events = tuple(obj["enabled_events"])
                    return
            self.endpoints.append(
                Endpoint(
                    obj["url"],
                    obj["_secret"],
                    bool(obj.get("_connect")),
                    tuple(obj["enabled_events"]),
                    obj["id"],
                )
            )

    def clear_endpoints(self) -> None:
        with self._cond:
            self.endpoints.clear()

    def targets(self, connect_event: bool) -> list[Endpoint]:
        """Platform events go to non-Connect endpoints; connected-account events go to
        Connect endpoints, or to the platform ones when no Connect endpoint exists."""
        connect_endpoints = [e for e in self.endpoints if e.connect]
        if connect_event and connect_endpoints:
            return connect_endpoints
        return [e for e in self.endpoints if not e.connect]

    def target_count(self, connect_event: bool) -> int:
        return len(self.targets(connect_event))

    # -- lifecycle -------------------------------------------------------------------------

    def start(self) -> None:
        if self._workers:
            return
        self._stopping = False
        self._workers = [
            threading.Thread(target=self._run, name=f"stripe-emulator-webhooks-{i}", daemon=True)
            for i in range(self.threads)
        ]
        for worker in self._workers:
            worker.start()

    def stop(self, timeout: float = 5.0) -> None:
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        deadline = time.monotonic() + timeout
        for worker in self._workers:
            worker.join(max(0.0, deadline - time.monotonic()))
        self._workers = []

    def pause(self) -> None:
        """Hold deliveries (events keep queueing) until `resume()`."""
        with self._cond:
            self._paused = True

    def resume(self) -> None:
        with self._cond:
            self._paused = False
            self._cond.notify_all()

    # -- queueing --------------------------------------------------------------------------

    def enqueue(self, event: dict[str, Any]) -> None:
        """Queue an event for every target endpoint (never blocks on the network)."""
        public = {k: v for k, v in event.items() if not k.startswith("_")}
        with self._cond:
            targets = [e for e in self.targets("account" in public) if e.wants(public["type"])]
        if not targets:
            return  # no endpoint asked for it: no body to build
        body = json.dumps(public, indent=2)
        with self._cond:
            queued = len(self._heap)
            now = time.monotonic()
            delay = self.chaos.delay_ms / 1000.0
            for endpoint in targets:
                self.stats["enqueued"] += 1
                drop = bool(self.chaos.drop_rate) and self.rng.random() < self.chaos.drop_rate
                self._push(
                    _Job(
                        now + delay,
                        next(self._seq),
                        public["id"],
                        public["type"],
                        body,
                        endpoint,
                        drop=drop,
                    )
                )
                if self.chaos.duplicate_rate and self.rng.random() < self.chaos.duplicate_rate:
                    copies = self.rng.randint(1, self.chaos.max_duplicates)
                    for i in range(copies):
                        self.stats["duplicates"] += 1
                        self._push(
                            _Job(
                                now + delay + 0.001 * (i + 1),
                                next(self._seq),
                                public["id"],
                                public["type"],
                                body,
                                endpoint,
                                original=False,
                            )
                        )
            self._cond.notify(len(self._heap) - queued)  # one thread per job

    def _push(self, job: _Job) -> None:
        heapq.heappush(self._heap, job)

    def redeliver_dropped(self) -> int:
        """Queue every dropped delivery again (without dropping it twice); returns the count."""
        with self._cond:
            dropped, self._dropped = self._dropped, []
            now = time.monotonic()
            for job in dropped:
                job.due = now
                job.seq = next(self._seq)
                job.drop = False
                self._push(job)
            self.stats["redelivered"] += len(dropped)
            self._cond.notify_all()
            return len(dropped)

    def redeliver_failed(self) -> int:
        """Queue again every delivery that exhausted its attempts (e.g. the endpoint was down)."""
        with self._cond:
            failed, self._gave_up = self._gave_up, []
            now = time.monotonic()
            for job in failed:
                job.due = now
                job.seq = next(self._seq)
                job.attempt = 1
                job.drop = False
                self._push(job)
            self.stats["redelivered"] += len(failed)
            self._cond.notify_all()
            return len(failed)

    def dropped_count(self) -> int:
        with self._cond:
            return len(self._dropped)

    def pending_count(self) -> int:
        with self._cond:
            return len(self._heap) + len(self._window) + self._in_flight

    def flush(self, timeout: float = 10.0) -> bool:
        """Wait until the queue is drained (dropped deliveries excluded); False on timeout."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while self._heap or self._window or self._in_flight:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._idle.wait(min(remaining, 0.05))
            return True

    def discard(self) -> None:
        """Forget queued and dropped deliveries (used by reset)."""
        with self._cond:
            self._heap.clear()
            self._window.clear()
            self._dropped.clear()
            self._gave_up.clear()
            self._cond.notify_all()
            self._idle.notify_all()

    # -- worker ----------------------------------------------------------------------------

    def _next_job(self) -> _Job | None:
        with self._cond:
            while True:
                if self._stopping:
                    return None
                if self._paused:
                    self._cond.wait(0.5)
                    continue
                now = time.monotonic()
                shuffle = self.chaos.shuffle
                limit = self.chaos.shuffle_window if shuffle else 1
                # Ready jobs move from the heap into a small window; with shuffle the next
                # delivery is a random pick from it (O(window), whatever the queue length).
                while self._heap and self._heap[0].due <= now and len(self._window) < limit:
                    self._window.append(heapq.heappop(self._heap))
                if not self._window:
                    self._cond.wait(self._heap[0].due - now if self._heap else 0.5)
                    continue
                if shuffle and len(self._window) < limit:
                    waited = now - min(j.due for j in self._window)
                    hold = self.chaos.shuffle_hold_ms / 1000.0
                    if waited < hold:
                        self._cond.wait(hold - waited)
                        continue
                job = self.shuffle_rng.choice(self._window) if shuffle else self._window[0]
                self._window.remove(job)
                if job.drop and job.attempt == 1:
                    self._dropped.append(job)
                    self.stats["dropped"] += 1
                    self.log.append(
                        Delivery(
                            job.event_id,
                            job.event_type,
                            job.endpoint.url,
                            job.attempt,
                            None,
                            dropped=True,
                            at=time.time(),
                        )
                    )
                    self._idle.notify_all()
                    continue
                self._in_flight += 1
                return job

    def _run(self) -> None:
        try:
            self._deliver_jobs()
        finally:
            for connection in getattr(self._local, "connections", {}).values():
                connection.close()

    def _deliver_jobs(self) -> None:
        while True:
            job = self._next_job()
            if job is None:
                return
            status = self._post(job)
            ok = status is not None and 200 <= status < 300
            report: tuple[str, bool] | None = None
            retried = False
            with self._cond:
                self._in_flight -= 1
                self.stats["attempts"] += 1
                self.log.append(
                    Delivery(
                        job.event_id,
                        job.event_type,
                        job.endpoint.url,
                        job.attempt,
                        status,
                        duplicate=not job.original,
                        at=time.time(),
                    )
                )
                if ok:
                    self.stats["delivered"] += 1
                    if job.original:
                        report = (job.event_id, True)
                else:
                    self.stats["failed_attempts"] += 1
                    if job.attempt < self.max_attempts and not self._stopping:
                        job.attempt += 1
                        job.due = time.monotonic() + self.retry_backoff_seconds * 2 ** (
                            job.attempt - 2
                        )
                        job.seq = next(self._seq)
                        self._push(job)
                        retried = True
                    else:
                        self.stats["gave_up"] += 1
                        self._gave_up.append(job)
                        if job.original:
                            report = (job.event_id, False)
                if retried:
                    self._cond.notify()  # a thread for the retry (it may be due before others)
                self._idle.notify_all()
            if report is not None and self.on_result is not None:
                self.on_result(*report)

    def _post(self, job: _Job) -> int | None:
        """One signed POST; the HTTP status, or None when no answer came."""
        timestamp = int(time.time())
        body = job.body.encode("utf-8")
        headers = {
            "Content-Type": "application/json; charset=utf-8",
            "Stripe-Signature": sign(job.body, job.endpoint.secret, timestamp),
            "User-Agent": "Stripe/1.0 (+https://stripe.com/docs/webhooks)",
        }
        try:
            url = urllib.parse.urlsplit(job.endpoint.url)
            if url.scheme not in ("http", "https") or not url.hostname:
                return None
            target = url.path or "/"
            if url.query:
                target = f"{target}?{url.query}"
            key = (url.scheme, url.netloc)
        except ValueError:
            return None
        connections: dict[tuple[str, str], http.client.HTTPConnection]
        connections = self._local.__dict__.setdefault("connections", {})
        for _ in range(2):
            connection = connections.pop(key, None)
            reused = connection is not None
            if connection is None:
                kind = (
                    http.client.HTTPSConnection
                    if url.scheme == "https"
                    else http.client.HTTPConnection
                )
                connection = kind(url.netloc, timeout=self.timeout_seconds)
            try:
                connection.request("POST", target, body, headers)
                response = connection.getresponse()
                response.read()
            except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError):
                connection.close()
                if reused:
                    continue  # the receiver closed an idle keep-alive connection: reopen
                return None
            except (OSError, http.client.HTTPException, ValueError):
                connection.close()
                return None
            if response.will_close:
                connection.close()
            else:
                connections[key] = connection
            return int(response.status)
        return None

    # -- introspection ---------------------------------------------------------------------

    def snapshot(self) -> dict[str, Any]:
        with self._cond:
            return {
                **self.stats,
                "queued": len(self._heap) + len(self._window),
                "in_flight": self._in_flight,
                "dropped_waiting": len(self._dropped),
                "failed_waiting": len(self._gave_up),
                "endpoints": [{"url": e.url, "connect": e.connect} for e in self.endpoints],
            }
