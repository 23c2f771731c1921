"""Benchmark `webhooks`: Stripe webhook ingest (verify + store + 200) through gunicorn.

Starts `gunicorn config.wsgi -w 2` on a free loopback port with the same DATABASE_URL, Celery
not eager (so processing is only *published* to Redis, on a throw-away queue deleted at the
end), signs N distinct events, POSTs them from a few client threads with keep-alive
sessions, and reports events/s and latency percentiles. Inbox rows it created are deleted.
"""

from __future__ import annotations

import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import requests
from django.conf import settings

from ops.bench import benchmark

ROOT = Path(__file__).resolve().parent.parent
CLIENT_THREADS = 4
WORKERS = 2
# The load generator shares the 2 cores with the server: `http` (http.client, persistent
# connection, reconnecting when gunicorn's sync workers close it) costs a third of the CPU
# of `requests`, which otherwise takes ~40% of the machine away from the server under test.
CLIENT = os.environ.get("BENCH_WEBHOOKS_CLIENT", "http")
Poster = Callable[[bytes, str], tuple[int, bytes]]


def _http_poster(port: int) -> Poster:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)

    def post(body: bytes, header: str) -> tuple[int, bytes]:
        headers = {"Stripe-Signature": header, "Content-Type": "application/json"}
        try:
            connection.request("POST", "/webhooks/stripe/", body, headers)
            response = connection.getresponse()
        except (http.client.HTTPException, OSError):
            connection.close()  # the server closed a kept-alive connection: retry once
            connection.request("POST", "/webhooks/stripe/", body, headers)
            response = connection.getresponse()
        return response.status, response.read()

    return post


def _requests_poster(endpoint: str) -> Poster:
    session = requests.Session()

    def post(body: bytes, header: str) -> tuple[int, bytes]:
        response = session.post(
            endpoint,
            data=body,
            headers={"Stripe-Signature": header, "Content-Type": "application/json"},
            timeout=10,
        )
        return response.status_code, response.content

    return post


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _event(run: str, i: int, created: int) -> dict[str, Any]:
    """A realistic payment_intent.succeeded event (about 1.5 kB, like Stripe's)."""
    return {
        "id": f"evt_bench_{run}_{i:07d}",
        "object": "event",
        "api_version": "2024-06-20",
        "created": created,
        "livemode": False,
        "pending_webhooks": 1,
        "request": {"id": f"req_bench_{i}", "idempotency_key": f"payment:order-{i}"},
        "type": "payment_intent.succeeded",
        "data": {
            "object": {
                "id": f"pi_bench_{run}_{i}",
                "object": "payment_intent",
                "amount": 2599,
                "amount_capturable": 0,
                "amount_received": 2599,
                "capture_method": "automatic",
                "client_secret": f"pi_bench_{i}_secret_x",
                "confirmation_method": "automatic",
                "created": created,
                "currency": "usd",
                "customer": "cus_bench",
                "description": None,
                "latest_charge": f"ch_bench_{run}_{i}",
                "livemode": False,
                "metadata": {"order_id": str(i)},
                "payment_method": "pm_card_visa",
                "payment_method_types": ["card"],
                "status": "succeeded",
                "transfer_group": f"ORDER_{i}",
                "amount_details": {"tip": {}},
                "automatic_payment_methods": None,
                "canceled_at": None,
                "cancellation_reason": None,
                "last_payment_error": None,
                "next_action": None,
                "on_behalf_of": None,
                "receipt_email": None,
                "setup_future_usage": None,
                "shipping": None,
                "statement_descriptor": None,
                "statement_descriptor_suffix": None,
            }
        },
    }


def _wait_ready(url: str, process: subprocess.Popen, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"gunicorn exited with {process.returncode}")
        try:
            requests.get(f"{url}/healthz", timeout=2)
            return
        except requests.RequestException:
            time.sleep(0.2)
    raise RuntimeError("gunicorn did not start in time")


def _server_cpu_seconds(pid: int) -> float | None:
    """CPU time of gunicorn's workers so far (Linux /proc), or None elsewhere."""
    try:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
        total = 0
        for child in children:
            fields = Path(f"/proc/{child}/stat").read_text().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])  # utime + stime, in clock ticks
        return total / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return None


def _percentile(sorted_values: list[float], fraction: float) -> float:
    if not sorted_values:
        return 0.0
    index = min(len(sorted_values) - 1, max(0, round(fraction * len(sorted_values)) - 1))
    return sorted_values[index]


def _cleanup(run: str, queue: str) -> None:
    from marketplace.models import StripeEvent

    StripeEvent.objects.filter(stripe_id__startswith=f"evt_bench_{run}_").delete()
    import redis

    try:
        client = redis.Redis.from_url(settings.REDIS_URL, socket_timeout=2)
        client.delete(queue, f"_kombu.binding.{queue}")
    except redis.RedisError as exc:  # Redis absent: nothing was queued there either
        print(f"webhooks bench: could not delete queue {queue}: {exc}", file=sys.stderr)


@benchmark("webhooks")
def bench_webhooks(quick: bool) -> dict[str, Any]:
    from marketplace.webhooks.signature import signature_header

    total = 600 if quick else 6000
    warmup = 300
    run = uuid.uuid4().hex[:10]
    secret = f"whsec_bench_{run}"
    queue = f"bench-stripe-events-{run}"
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    env = {
        **os.environ,
        "CELERY_EAGER": "0",
        "STRIPE_WEBHOOK_SECRET": secret,
        "STRIPE_EVENTS_QUEUE": queue,
        "DEBUG": "0",
        "LOG_LEVEL": "WARNING",
    }
    gunicorn = str(Path(sys.executable).with_name("gunicorn"))
    command = [gunicorn, "config.wsgi", "-w", str(WORKERS), "-b", f"127.0.0.1:{port}"]
    command += ["--log-level", "warning", "--backlog", "256"]
    process = subprocess.Popen(command, cwd=ROOT, env=env)  # noqa: S603
    try:
        _wait_ready(url, process)
        created = int(time.time())
        requests_ = []
        for i in range(warmup + total):
            body = json.dumps(_event(run, i, created), separators=(",", ":")).encode()
            requests_.append((body, signature_header(body, [secret], int(time.time()))))
        warm, measured = requests_[:warmup], requests_[warmup:]

        latencies: list[list[float]] = [[] for _ in range(CLIENT_THREADS)]
        errors = [0] * CLIENT_THREADS
        endpoint = f"{url}/webhooks/stripe/"

        def client(index: int, batch: list[tuple[bytes, str]], record: bool) -> None:
            post = _requests_poster(endpoint) if CLIENT == "requests" else _http_poster(port)
            for body, header in batch:
                started = time.perf_counter()
                try:
                    status, answer = post(body, header)
                    ok = status == 200 and not json.loads(answer)["duplicate"]
                except (OSError, ValueError, KeyError, requests.RequestException):
                    ok = False
                if record:
                    latencies[index].append(time.perf_counter() - started)
                    errors[index] += 0 if ok else 1

        def run_clients(batch: list[tuple[bytes, str]], record: bool) -> float:
            threads = [
                threading.Thread(target=client, args=(i, batch[i::CLIENT_THREADS], record))
                for i in range(CLIENT_THREADS)
            ]
            started = time.perf_counter()
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
            return time.perf_counter() - started

        run_clients(warm, record=False)
        cpu_before = _server_cpu_seconds(process.pid)
        seconds = run_clients(measured, record=True)
        cpu_after = _server_cpu_seconds(process.pid)
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

    from marketplace.models import StripeEvent

    stored = StripeEvent.objects.filter(stripe_id__startswith=f"evt_bench_{run}_").count()
    _cleanup(run, queue)
    ordered = sorted(x for per_thread in latencies for x in per_thread)
    return {
        "events": total,
        "workers": WORKERS,
        "client_threads": CLIENT_THREADS,
        "client": CLIENT,
        "seconds": round(seconds, 3),
        "events_per_s": round(total / seconds, 1),
        "p50_ms": round(_percentile(ordered, 0.50) * 1000, 2),
        "p99_ms": round(_percentile(ordered, 0.99) * 1000, 2),
        "max_ms": round((ordered[-1] if ordered else 0.0) * 1000, 2),
        "errors": sum(errors),
        # CPU the two workers spent per event (excludes PostgreSQL, Redis and the client):
        # a figure that other load on the machine does not distort much.
        "server_cpu_ms_per_event": round((cpu_after - cpu_before) / total * 1000, 3)
        if cpu_before is not None and cpu_after is not None
        else None,
        "stored": stored - warmup,
    }
