"""Benchmark `webhooks`: Stripe webhook ingest (verify + store + 200) through gunicorn.

Starts gunicorn as deployed (`config.wsgi -c python:ops.gunicorn_conf`: 2 gthread workers of
8 threads, keep-alive; `BENCH_WEBHOOKS_CONF=0`: 2 plain sync workers, the figure of the
passes before the twelfth) on a free loopback port with the same DATABASE_URL, Celery
not eager (so processing is only *published* to Redis, on a throw-away queue deleted at the
end), signs N distinct events, POSTs them from a few client threads with keep-alive
sessions, and reports events/s and latency percentiles. Inbox rows it created are deleted.
"""

from __future__ import annotations

import http.client
import json
import os
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

from ops.bench import benchmark, process_stop

ROOT = Path(__file__).resolve().parent.parent
CLIENT_THREADS = 4
WORKERS = 2
# The load generator shares the 2 cores with the server: `http` (http.client, persistent
# connection, reconnecting when gunicorn's sync workers close it) costs a third of the CPU
# of `requests`, which otherwise takes ~40% of the machine away from the server under test.
CLIENT = os.environ.get("BENCH_WEBHOOKS_CLIENT", "http")
# gunicorn with the production settings (ops/gunicorn_conf.py: gthread, keep-alive), as
# deployed and as `bench stack` runs it; BENCH_WEBHOOKS_CONF=0: plain sync workers instead.
WEB_CONF = os.environ.get("BENCH_WEBHOOKS_CONF", "1") != "0"
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


def _event_id(run: str, i: int) -> str:
    return f"evt_bench_{run}_{i:07d}"


def _event(run: str, i: int, created: int) -> dict[str, Any]:
    """A realistic payment_intent.succeeded event (about 1.5 kB, like Stripe's)."""
    return {
        "id": _event_id(run, i),
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


def _vacuum_inbox() -> None:
    """Reclaim the dead rows earlier runs left (the test server runs with autovacuum off,
    and a bloated unique index makes every insert slower)."""
    from django.db import connection

    from stripe_gateway.models import StripeEvent

    if connection.vendor == "postgresql" and not connection.in_atomic_block:
        with connection.cursor() as cursor:
            cursor.execute(f"VACUUM ANALYZE {StripeEvent._meta.db_table}")


def _bench_rows(run: str, count: int) -> Any:
    """The inbox rows of a run's `count` events, by id (the unique index; no prefix search,
    which has no index of its own since stripe_gateway 0002)."""
    from stripe_gateway.models import StripeEvent

    ids = [_event_id(run, i) for i in range(count)]
    return StripeEvent.objects.filter(stripe_id__in=ids)


def _cleanup(run: str, queue: str, count: int) -> None:
    _bench_rows(run, count).delete()
    _vacuum_inbox()
    import redis

    try:
        client = redis.Redis.from_url(settings.REDIS_URL, socket_timeout=2)
        client.delete(queue, f"_kombu.binding.{queue}")
    except redis.RedisError as exc:  # Redis absent: nothing was queued there either
        print(f"webhooks bench: could not delete queue {queue}: {exc}", file=sys.stderr)


@benchmark("webhooks")
def bench_webhooks(quick: bool) -> dict[str, Any]:
    from stripe_gateway.signature import signature_header

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
    _vacuum_inbox()
    gunicorn = str(Path(sys.executable).with_name("gunicorn"))
    if WEB_CONF:
        # As deployed (ops/gunicorn_conf.py: gthread, keep-alive, access log), 2 workers.
        env |= {"BIND": f"127.0.0.1:{port}", "WEB_WORKERS": str(WORKERS), "WEB_MAX_REQUESTS": "0"}
        command = [gunicorn, "config.wsgi", "-c", "python:ops.gunicorn_conf"]
        command += ["--log-level", "warning", "--access-logfile", "/dev/null"]
    else:
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
        process_stop(process, timeout=20)

    stored = _bench_rows(run, warmup + total).count()
    _cleanup(run, queue, warmup + total)
    ordered = sorted(x for per_thread in latencies for x in per_thread)
    return {
        "events": total,
        "workers": WORKERS,
        "client_threads": CLIENT_THREADS,
        "client": CLIENT,
        "gunicorn": "ops/gunicorn_conf.py (gthread)" if WEB_CONF else "sync workers",
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


# --- orders: payment webhook + delivery split through the ledger -------------------------------
# Benchmark `orders`: end-to-end order throughput on the money path. Setup (untimed): a few
# restaurants and riders, N orders placed through `order_create` (a third with a coupon, so
# the reservation exists). Timed, per order, in P worker processes of T threads each (each
# thread its own connection; processes, like Celery workers, so Python is not one GIL):
#   1. ingest: a signed `payment_intent.succeeded` is verified and stored exactly as the
#      webhook view does (verify_signature + event_parse + event_ingest), without HTTP;
#   2. process: `event_process` claims the inbox row, runs the handler's prepare (the charge
#      fetch: a FAKE gateway answering from memory, the only thing not real), then the
#      payment flow (`payment:<ch>`) and the processed mark in one transaction;
#   3. split: `order_deliver` runs the split flow (`delivery:<id>`).
# Reports orders/s over the timed phase, errors, and per order: the mean ms of each step
# (thread time) and the CPU ms spent by the workers and by PostgreSQL.

ORDERS_PROCS = int(os.environ.get("BENCH_ORDERS_PROCS", "4"))
ORDERS_THREADS = int(os.environ.get("BENCH_ORDERS_THREADS", "1"))


class _BenchGateway:
    """Answers `charge_retrieve` from memory (the Stripe fetch of the payment handler)."""

    def __init__(self) -> None:
        self.charges: dict[str, dict[str, Any]] = {}

    def charge_retrieve(self, charge_id: str, *, expand: Any = ()) -> dict[str, Any]:
        return self.charges[charge_id]


def _orders_setup(run: str, count: int, gateway: _BenchGateway) -> list[tuple[int, bytes, str]]:
    """Orders placed, their charges at the fake gateway, their signed webhook bodies."""
    from marketplace.models import Order
    from marketplace.services.campaigns import campaign_create, campaign_fund
    from marketplace.services.orders import order_create
    from marketplace.services.parties import restaurant_onboard, rider_onboard
    from stripe_gateway.signature import signature_header

    restaurants = [
        restaurant_onboard(name=f"bench {run} r{i}", with_stripe_account=False) for i in range(8)
    ]
    for i in range(8):
        rider_onboard(name=f"bench {run} d{i}", with_stripe_account=False)
    code = f"B{run[:12].upper()}"
    campaign = campaign_create(code=code, budget=99_999_999, per_order_cap=300)
    campaign_fund(campaign_id=campaign.pk, amount=count * 300)
    secret = settings.STRIPE_WEBHOOK_SECRETS[0]
    prepared = []
    now = int(time.time())
    for i in range(count):
        order = order_create(
            restaurant_id=restaurants[i % len(restaurants)].pk,
            subtotal=1500 + (i % 40) * 25,
            delivery_fee=299,
            coupon_code=code if i % 3 == 0 else None,
        )
        pi_id, ch_id = f"pi_bench_{run}_{i}", f"ch_bench_{run}_{i}"
        Order.objects.filter(pk=order.pk).update(payment_intent_id=pi_id, status="pending_payment")
        fee = (order.total * 29 + 500) // 1000 + 30
        gateway.charges[ch_id] = {
            "id": ch_id,
            "object": "charge",
            "amount": order.total,
            "currency": "usd",
            "status": "succeeded",
            "payment_intent": pi_id,
            "metadata": {"order_id": str(order.pk)},
            "balance_transaction": {
                "id": f"txn_bench_{run}_{i}",
                "amount": order.total,
                "fee": fee,
                "net": order.total - fee,
            },
        }
        event = {
            "id": f"evt_bench_{run}_{i}",
            "object": "event",
            "type": "payment_intent.succeeded",
            "created": now,
            "livemode": False,
            "api_version": "2024-06-20",
            "data": {
                "object": {
                    "id": pi_id,
                    "object": "payment_intent",
                    "amount": order.total,
                    "currency": "usd",
                    "status": "succeeded",
                    "latest_charge": ch_id,
                    "metadata": {"order_id": str(order.pk)},
                    "transfer_group": f"ORDER_{order.pk}",
                }
            },
        }
        body = json.dumps(event, separators=(",", ":")).encode()
        prepared.append((order.pk, body, signature_header(body, [secret], now)))
    return prepared


def _pg_cpu_seconds(pids: list[int]) -> float | None:
    """CPU seconds used so far by these PostgreSQL backends (when they run on this host)."""
    total = 0.0
    try:
        for pid in pids:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return None
    return total


def _orders_worker(batch: list[tuple[int, bytes, str]], riders: list[int], out: Any) -> None:
    """One worker process: T threads over its batch; sends its figures through `out`."""
    from django.db import connection, connections

    from marketplace.services.orders import order_deliver
    from stripe_gateway import conf as gateway_conf
    from stripe_gateway.services import event_ingest, event_parse, event_process
    from stripe_gateway.signature import verify_signature

    timings = {"ingest": 0.0, "process": 0.0, "split": 0.0}
    errors: list[str] = []
    pids: list[int] = []
    lock = threading.Lock()
    ready = threading.Barrier(ORDERS_THREADS + 1)
    cpu_started = [0.0]

    def thread(items: list[tuple[int, bytes, str]]) -> None:
        local = {"ingest": 0.0, "process": 0.0, "split": 0.0}
        connection.ensure_connection()
        with lock:
            pids.append(connection.connection.info.backend_pid)  # type: ignore[union-attr]
        ready.wait()
        try:
            for order_id, body, header in items:
                try:
                    t0 = time.perf_counter()
                    verify_signature(
                        body,
                        header,
                        settings.STRIPE_WEBHOOK_SECRETS,
                        tolerance=gateway_conf.get("STRIPE_WEBHOOK_TOLERANCE"),
                    )
                    payload = event_parse(body)
                    event_ingest(payload=payload, raw=body.decode(), schedule=False)
                    t1 = time.perf_counter()
                    outcome = event_process(event_id=payload["id"])
                    t2 = time.perf_counter()
                    if outcome.status != "processed":
                        raise RuntimeError(f"{payload['id']}: {outcome.status} {outcome.error}")
                    order_deliver(order_id=order_id, rider_id=riders[order_id % len(riders)])
                    t3 = time.perf_counter()
                    local["ingest"] += t1 - t0
                    local["process"] += t2 - t1
                    local["split"] += t3 - t2
                except Exception as exc:
                    with lock:
                        errors.append(f"{exc.__class__.__name__}: {exc}"[:200])
        finally:
            with lock:
                for key, value in local.items():
                    timings[key] += value

    threads = [
        threading.Thread(target=thread, args=(batch[i::ORDERS_THREADS],))
        for i in range(ORDERS_THREADS)
    ]
    for t in threads:
        t.start()
    ready.wait()
    cpu_started[0] = time.process_time()
    pg_started = _pg_cpu_seconds(pids)
    for t in threads:
        t.join()
    cpu = time.process_time() - cpu_started[0]
    pg_done = _pg_cpu_seconds(pids)
    pg = None if pg_started is None or pg_done is None else pg_done - pg_started
    connections.close_all()
    out.send({"timings": timings, "errors": errors, "cpu": cpu, "pg_cpu": pg})
    out.close()


@benchmark("orders")
def bench_orders(quick: bool) -> dict[str, Any]:
    import multiprocessing
    from unittest import mock

    from django.db import connections

    from marketplace.models import Rider

    count = 300 if quick else 2000
    run = uuid.uuid4().hex[:10]
    gateway = _BenchGateway()
    with mock.patch("marketplace.handlers.get_gateway", lambda: gateway):
        prepared = _orders_setup(run, count, gateway)
        riders = list(
            Rider.objects.filter(name__startswith=f"bench {run} ").values_list("id", flat=True)
        )
        connections.close_all()  # never share a connection with the forked workers
        context = multiprocessing.get_context("fork")
        pipes, processes = [], []
        started = time.perf_counter()
        for i in range(ORDERS_PROCS):
            receiver, sender = context.Pipe(duplex=False)
            process = context.Process(
                target=_orders_worker, args=(prepared[i::ORDERS_PROCS], riders, sender)
            )
            process.start()
            pipes.append(receiver)
            processes.append(process)
        results = [pipe.recv() for pipe in pipes]
        elapsed = time.perf_counter() - started
        for process in processes:
            process.join()
    errors = [e for r in results for e in r["errors"]]
    done = count - len(errors)
    per_order = {
        f"{key}_ms": round(sum(r["timings"][key] for r in results) / max(1, done) * 1000, 2)
        for key in ("ingest", "process", "split")
    }
    pg_cpu = [r["pg_cpu"] for r in results]
    return {
        "orders": count,
        "processes": ORDERS_PROCS,
        "threads": ORDERS_THREADS,
        "seconds": round(elapsed, 3),
        "orders_per_s": round(done / elapsed, 1),
        "errors": len(errors),
        "first_errors": errors[:3],
        "breakdown": {
            **per_order,
            "worker_cpu_ms": round(sum(r["cpu"] for r in results) / max(1, done) * 1000, 2),
            "postgres_cpu_ms": None
            if None in pg_cpu
            else round(sum(pg_cpu) / max(1, done) * 1000, 2),
            "note": "per order; step times are thread time (they overlap across workers); "
            "the Stripe charge fetch is an in-memory fake",
        },
        "load_average": os.getloadavg()[0],
    }
