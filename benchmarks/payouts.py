"""`python manage.py bench payouts [--quick]`: one scheduling pass paying N payees (10,000;
1,000 with --quick) against the Stripe emulator, with 2 Celery workers. One JSON line.

Setup (not timed): N restaurants with a connected account at the emulator (created in-process,
no HTTP) and a balance on the ledger; the platform's Stripe balance topped up. The emulator
serves HTTP from a thread of this process, which otherwise only polls the database once a
second, so the emulator has the GIL to itself.

Timed: from sending the scheduling task to the moment every payout is terminal. Two worker
processes (`celery worker --pool=solo`, a throw-away queue on REDIS_URL): one runs the pass
(chunks of payees reserved per transaction, driving batches sent as each chunk commits), both
drive the batches (submit -> one Stripe call per payout -> record -> settle, per batch).

Figures: payees, seconds, payouts_per_s, duplicate_transfers (transfers beyond one per payout,
plus transfers of no payout: must be 0), schedule_seconds (the pass alone), paid / other
(payouts not paid), books_ok (the payees and their payout accounts are at zero, the emulator
holds exactly the paid total), and cpu_s: CPU seconds used during the timed pass by the
workers, the emulator (this process), every PostgreSQL process alive at both ends (other
databases' too), the whole machine, and what is left: other processes on this machine.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

from django.conf import settings
from django.db import connection

from ops.bench import benchmark, process_stop

ROOT = Path(__file__).resolve().parent.parent
WORKERS = 2
API_KEY = "sk_test_bench_payouts"


def _setup(n: int, server: Any, run: str) -> list[tuple[str, int]]:
    from ledger.services import TxInput, transactions_post_bulk
    from marketplace.models import Restaurant

    status, body = server.request(
        "POST", "/v1/topups", {"amount": 2_000_000 * n + 10_000, "currency": "usd"}, api_key=API_KEY
    )
    if status != 200:
        raise RuntimeError(f"emulator top-up failed: {body}")
    accounts = []
    for _ in range(n):
        status, body = server.request("POST", "/v1/accounts", {"type": "express"}, api_key=API_KEY)
        if status != 200:
            raise RuntimeError(f"emulator account failed: {body}")
        accounts.append(body["id"])
    restaurants = Restaurant.objects.bulk_create(
        [
            Restaurant(name=f"bench {run} {i}", stripe_account_id=accounts[i], asset="USD/2")
            for i in range(n)
        ],
        batch_size=2000,
    )
    for start in range(0, n, 1000):
        transactions_post_bulk(
            items=[
                TxInput(
                    postings=[
                        {
                            "source": "stripe:balance",
                            "destination": r.ledger_address,
                            "asset": "USD/2",
                            "amount": 1_000 + (i % 5_000),
                        }
                    ],
                    overdraft={"stripe:balance": None},
                    metadata={"flow": "bench-payouts-credit"},
                )
                for i, r in enumerate(restaurants[start : start + 1000], start)
            ]
        )
    return [("restaurant", r.pk) for r in restaurants]


def _worker(server_url: str, queue: str, index: int) -> subprocess.Popen:
    env = {
        **os.environ,
        "CELERY_EAGER": "0",
        "STRIPE_API_BASE": server_url,
        "STRIPE_API_KEY": API_KEY,
        "STRIPE_MAX_NETWORK_RETRIES": "0",
        "STRIPE_TIMEOUT": "30",
        "PAYOUTS_QUEUE": queue,
        "LOG_LEVEL": "WARNING",
        "DEBUG": "0",
    }
    command = [sys.executable, "-m", "celery", "-A", "config", "worker", "--pool=solo"]
    command += ["-Q", queue, "-n", f"bench-payouts-{index}-{queue}@%h", "-l", "WARNING"]
    command += ["--without-gossip", "--without-mingle", "--without-heartbeat"]
    # The worker's banner goes to stderr: stdout carries only the benchmark's JSON lines.
    return subprocess.Popen(command, cwd=ROOT, env=env, stdout=sys.stderr)  # noqa: S603


_TICK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def _cpu_of(pid: int) -> float:
    """CPU seconds (user + system) a process used so far; 0 when unknown."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / _TICK
    except (OSError, IndexError, ValueError):
        return 0.0


def _postgres_cpu() -> float:
    """CPU seconds of every postgres process on this machine (the bench's database included)."""
    total = 0.0
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if (entry / "comm").read_text().strip() in ("postgres", "postmaster"):
                    total += _cpu_of(int(entry.name))
            except OSError:
                continue
    return total


def _machine_cpu() -> tuple[float, float]:
    """(busy, total) CPU seconds of the whole machine since boot, from /proc/stat."""
    try:
        values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    except (OSError, ValueError):
        return 0.0, 0.0
    idle = values[3] + (values[4] if len(values) > 4 else 0)
    return (sum(values) - idle) / _TICK, sum(values) / _TICK


def _cleanup_queue(queue: str) -> None:
    import redis

    with contextlib.suppress(Exception):  # Redis gone: nothing left there either
        client = redis.Redis.from_url(settings.REDIS_URL, socket_timeout=2)
        client.delete(queue, f"_kombu.binding.{queue}")


@benchmark("payouts")
def bench_payouts(quick: bool) -> dict[str, Any]:
    if connection.vendor != "postgresql":
        raise RuntimeError("the payouts benchmark needs PostgreSQL (DATABASE_URL)")
    from config.celery import app as celery_app
    from payouts.models import Payout
    from payouts.selectors import balances_of
    from payouts.transitions import TERMINAL
    from stripe_emulator import EmulatorServer

    n = 1_000 if quick else 10_000
    run = uuid.uuid4().hex[:8]
    queue = f"bench-payouts-{run}"
    server = EmulatorServer(port=0).start()
    workers: list[subprocess.Popen] = []
    try:
        setup_started = time.perf_counter()
        payee_ids = _setup(n, server, run)
        setup_seconds = time.perf_counter() - setup_started
        workers = [_worker(server.url, queue, i) for i in range(WORKERS)]
        time.sleep(4)  # let the workers connect before the clock starts

        celery_app.conf.task_always_eager = False
        first_id = min(pk for _kind, pk in payee_ids)
        last_id = max(pk for _kind, pk in payee_ids)
        mine = Payout.objects.filter(
            payee_kind="restaurant", payee_id__gte=first_id, payee_id__lte=last_id
        )
        cpu_before = {
            "workers": sum(_cpu_of(w.pid) for w in workers),
            "emulator": time.process_time(),  # this process: the emulator's thread
            "postgres": _postgres_cpu(),
            "machine": _machine_cpu(),
        }
        started = time.perf_counter()
        celery_app.send_task(
            "payouts.tasks.payouts_schedule",
            args=[[list(k) for k in payee_ids]],
            queue=queue,
        )
        terminal = [str(s) for s in TERMINAL]
        schedule_seconds = None
        deadline = started + (600 if not quick else 180)
        while time.perf_counter() < deadline:
            total = mine.count()
            if schedule_seconds is None and total >= n:
                schedule_seconds = time.perf_counter() - started
            if total >= n and not mine.exclude(state__in=terminal).exists():
                break
            if any(w.poll() is not None for w in workers):
                raise RuntimeError("a worker died")
            time.sleep(0.5)
        seconds = time.perf_counter() - started
        busy_after, total_after = _machine_cpu()
        busy_before, total_before = cpu_before["machine"]  # type: ignore[misc]
        cpu = {
            "workers": sum(_cpu_of(w.pid) for w in workers) - cpu_before["workers"],  # type: ignore[operator]
            "emulator": time.process_time() - cpu_before["emulator"],  # type: ignore[operator]
            "postgres": _postgres_cpu() - cpu_before["postgres"],  # type: ignore[operator]
            "machine_busy": busy_after - busy_before,
            "machine_total": total_after - total_before,
        }
        cpu["other_processes"] = (
            cpu["machine_busy"] - cpu["workers"] - cpu["emulator"] - cpu["postgres"]
        )

        counts = server.transfer_counts()
        ids = {str(pk) for pk in mine.values_list("id", flat=True)}
        paid = mine.filter(state="paid").count()
        duplicates = sum(c - 1 for c in counts.values() if c > 1)
        duplicates += sum(c for payout_id, c in counts.items() if payout_id not in ids)
        paid_total = sum(mine.filter(state="paid").values_list("amount", flat=True))
        balances = balances_of(
            [a for pair in mine.values_list("payee_address", "account") for a in pair]
        )
        books_ok = all(v == 0 for assets in balances.values() for v in assets.values())
        emulator_total = sum(t["amount"] for t in server.state.store.iter_kind("transfer"))
        return {
            "payees": n,
            "workers": WORKERS,
            "seconds": round(seconds, 2),
            "payouts_per_s": round(paid / seconds, 1) if seconds else None,
            "duplicate_transfers": duplicates,
            "schedule_seconds": round(schedule_seconds, 2) if schedule_seconds else None,
            "paid": paid,
            "other": mine.count() - paid,
            "transfers": sum(counts.values()),
            "books_ok": books_ok and emulator_total == paid_total,
            "setup_seconds": round(setup_seconds, 1),
            # where the time goes: CPU seconds used during the timed pass, per component
            "cpu_s": {k: round(v, 1) for k, v in cpu.items()},
        }
    finally:
        for process in workers:
            process_stop(process)
        server.stop()
        _cleanup_queue(queue)
