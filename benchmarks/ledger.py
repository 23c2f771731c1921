"""`python manage.py bench ledger [--quick]`: the ledger's write and read speed, one JSON line.

Workload: an order's split, one transaction of 4 postings: `stripe:balance` -> `orders:<id>`
(unbounded overdraft on `stripe:balance`), then `orders:<id>` -> the rider, the restaurant and
`platform:fees` (the order account checked: it may not go below zero). 1,000 restaurants and
1,000 riders; `stripe:balance` and `platform:fees` are in every transaction.

- serial_tx_per_s: one writer, `transaction_post`, autocommit (each transaction durable).
- contention_tx_per_s / contention_errors: 4 writer threads (own connections), same workload,
  all through the two hot accounts. contention_lock_waits: how often a writer's backend was
  seen waiting for a lock (pg_stat_activity sampled every 2 ms during the run, by wait event;
  `contention_lock_samples` polls): a row-lock wait is `Lock:transactionid` or `Lock:tuple`.
  contention_writers_by_state: where the writers' backends were, on average over the same
  samples (cpu, wal: flushing the WAL or waiting for the backend that does, lock, client:
  waiting for their writer, other); the values add up to the writers.
- bulk_postings_per_s: `transactions_post_bulk(atomic=True)` in batches of 500 transactions.
- balance_read_p50_ms: `balance_get` of an account with balance_read_postings postings. That
  history is generated once per database with set-based SQL (INSERT ... SELECT over
  generate_series, 10 postings per transaction, balance rows and sealer queue filled the same
  way, so the ledger stays consistent) and reused by later runs.
- balance_asof_p50_ms / _p99_ms: `balance_get(at=...)` of the same account at a random
  instant of its history, from the balance checkpoints (runs every 15 minutes over the
  history, as the beat task leaves them: `checkpoints_run`, reused by later runs);
  balance_asof_plain_p50_ms is the plain sum of the postings up to the instant, for reference.
- raw_sql_tx_per_s: the least SQL that records the same transaction: one prepared statement,
  autocommit, inserting the transaction row and its 4 postings into bare tables (primary keys
  only, no accounts, no balances, no checks, no indexes for reads). serial_vs_raw is our ratio.
"""

from __future__ import annotations

import multiprocessing
import os
import statistics
import threading
import time
import uuid
from pathlib import Path
from typing import Any, NamedTuple

from django.db import DatabaseError, connection, connections

from ledger.domain import PostingInput
from ledger.selectors import balance_get
from ledger.services import transaction_post, transactions_post_bulk
from ops.bench import benchmark

RESTAURANTS = 1000
RIDERS = 1000
ASSET = "USD/2"
HISTORY_ACCOUNT = "bench:history"
HOT = {"stripe:balance": None}


def split_postings(order: str, i: int) -> list[PostingInput]:
    restaurant = f"restaurants:{i % RESTAURANTS:04d}"
    rider = f"riders:{(i * 7) % RIDERS:04d}"
    return [
        PostingInput("stripe:balance", order, ASSET, 5000),
        PostingInput(order, rider, ASSET, 500),
        PostingInput(order, restaurant, ASSET, 3750),
        PostingInput(order, "platform:fees", ASSET, 750),
    ]


def _post_orders(run: str, start: int, count: int) -> int:
    errors = 0
    for i in range(start, start + count):
        try:
            transaction_post(postings=split_postings(f"orders:{run}-{i}", i), overdraft=HOT)
        except Exception:
            errors += 1
    return errors


def _setup_accounts() -> None:
    """Create the 1,000 restaurants and riders (and the hot accounts) once."""
    items = [
        {
            "postings": [
                PostingInput("world", f"restaurants:{i:04d}", ASSET, 1),
                PostingInput("world", f"riders:{i:04d}", ASSET, 1),
            ],
            "reference": f"bench:setup:{i}",
        }
        for i in range(max(RESTAURANTS, RIDERS))
    ]
    items.append(
        {
            "postings": [
                PostingInput("world", "stripe:balance", ASSET, 1),
                PostingInput("world", "platform:fees", ASSET, 1),
            ],
            "reference": "bench:setup:hot",
        }
    )
    transactions_post_bulk(items=items)


# What a writer backend is doing when sampled (pg_stat_activity): running ("cpu": active, no
# wait event), waiting on the WAL ("wal": its flush or the lock held by the backend flushing),
# on a heavyweight lock ("lock"), on its client ("client": idle, or reading the next request),
# or anything else ("other": buffer locks, data file reads...).
WRITER_STATES = ("cpu", "wal", "lock", "client", "other")
_WAL_WAITS = {("IO", "WALSync"), ("IO", "WALWrite"), ("IO", "WALInitSync"), ("LWLock", "WALWrite")}


def writer_state(state: str | None, wait_type: str | None, wait_event: str | None) -> str:
    if wait_type == "Lock":
        return "lock"
    if (wait_type, wait_event) in _WAL_WAITS:
        return "wal"
    if state != "active" or wait_event == "ClientRead":
        return "client"
    if wait_type is None:
        return "cpu"
    return "other"


class LockWaits:
    """Samples pg_stat_activity from its own connection while writers run: how many times a
    writer backend was seen waiting on a heavyweight lock, by wait event, and where the writers
    are on average (`states`: the mean number of writer backends in each of WRITER_STATES per
    sample, which add up to the writers)."""

    def __init__(self, period: float = 0.002) -> None:
        self.period = period
        self.pids: list[int] = []
        self.samples = 0
        self.waits: dict[str, int] = {}
        self.seen = dict.fromkeys(WRITER_STATES, 0)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll)

    def start(self, pids: list[int]) -> None:
        self.pids = pids
        self._thread.start()

    def stop(self) -> dict[str, int]:
        self._stop.set()
        self._thread.join()
        return dict(sorted(self.waits.items()))

    @property
    def states(self) -> dict[str, float]:
        return {k: round(n / max(1, self.samples), 2) for k, n in self.seen.items()}

    def _poll(self) -> None:
        try:
            with connection.cursor() as cursor:
                while not self._stop.is_set():
                    cursor.execute(
                        "SELECT state, wait_event_type, wait_event FROM pg_stat_activity "
                        "WHERE pid = ANY(%s)",
                        [self.pids],
                    )
                    self.samples += 1
                    for state, wait_type, event in cursor.fetchall():
                        self.seen[writer_state(state, wait_type, event)] += 1
                        if wait_type == "Lock":
                            self.waits[event] = self.waits.get(event, 0) + 1
                    time.sleep(self.period)
        finally:
            connections.close_all()


def row_lock_waits(waits: dict[str, int]) -> int:
    return waits.get("transactionid", 0) + waits.get("tuple", 0)


class WriterRun(NamedTuple):
    rate: float  # transactions (post calls) per second, all writers
    errors: int
    waits: dict[str, int]  # heavyweight-lock waits seen, by wait event
    samples: int  # pg_stat_activity polls
    states: dict[str, float]  # mean writer backends per state (LockWaits.states)


def _writer_loop(w: int, per_writer: int, post: Any, warm: int, barrier: Any) -> int:
    """One writer's run: `warm` calls, the start line (`barrier`), then post(w, i) for i <
    per_writer; returns how many of those raised."""
    for i in range(warm):
        post(w, per_writer + i)
    barrier.wait()
    failed = 0
    for i in range(per_writer):
        try:
            post(w, i)
        except Exception:
            failed += 1
    return failed


def run_writers(writers: int, per_writer: int, post: Any, warm: int = 50) -> WriterRun:
    """`writers` threads (own connections) each calling post(writer, i) for i < per_writer
    (after `warm` warm-up calls), pg_stat_activity sampled meanwhile (LockWaits)."""
    errors = [0] * writers
    pids = [0] * writers
    barrier = threading.Barrier(writers + 1)

    def work(w: int) -> None:
        try:
            connection.ensure_connection()
            pids[w] = connection.connection.info.backend_pid  # type: ignore[union-attr]
            errors[w] = _writer_loop(w, per_writer, post, warm, barrier)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=work, args=(w,)) for w in range(writers)]
    for t in threads:
        t.start()
    barrier.wait()
    sampler = LockWaits()
    sampler.start(pids)
    started = time.perf_counter()
    for t in threads:
        t.join()
    seconds = time.perf_counter() - started
    waits = sampler.stop()
    return WriterRun(
        writers * per_writer / seconds, sum(errors), waits, sampler.samples, sampler.states
    )


def run_writer_processes(writers: int, per_writer: int, post: Any, warm: int = 50) -> WriterRun:
    """`run_writers` with each writer in a process of its own (forked), as the product's
    writers are (Celery's prefork pool, gunicorn's workers): the writers' Python runs in
    parallel instead of taking turns on one interpreter lock."""
    context = multiprocessing.get_context("fork")
    barrier = context.Barrier(writers + 1, timeout=300)
    pids = context.Queue()
    errors = context.Queue()
    connections.close_all()  # each writer opens its own connection

    def work(w: int) -> None:
        failed = 0
        try:
            connection.ensure_connection()
            pids.put(connection.connection.info.backend_pid)  # type: ignore[union-attr]
            failed = _writer_loop(w, per_writer, post, warm, barrier)
        except Exception:
            failed = per_writer
            barrier.abort()
        finally:
            errors.put(failed)
            connections.close_all()

    processes = [context.Process(target=work, args=(w,)) for w in range(writers)]
    for process in processes:
        process.start()
    sampler = LockWaits()
    sampler.start([pids.get(timeout=300) for _ in processes])
    barrier.wait()
    started = time.perf_counter()
    failed = sum(errors.get(timeout=600) for _ in processes)
    seconds = time.perf_counter() - started
    for process in processes:
        process.join()
    waits = sampler.stop()
    return WriterRun(writers * per_writer / seconds, failed, waits, sampler.samples, sampler.states)


def writer_figures(prefix: str, result: WriterRun, *, tx_per_call: int = 1) -> dict[str, Any]:
    """A multi-writer run's figures, named `<prefix>_...` (tx_per_call: transactions per post
    call, for the rate)."""
    return {
        f"{prefix}_tx_per_s": round(tx_per_call * result.rate),
        f"{prefix}_errors": result.errors,
        f"{prefix}_row_lock_waits": row_lock_waits(result.waits),
        f"{prefix}_lock_waits": result.waits,
        f"{prefix}_lock_samples": result.samples,
        f"{prefix}_writers_by_state": result.states,
    }


def _contention(run: str, writers: int, per_writer: int) -> WriterRun:
    def post(w: int, i: int) -> None:
        transaction_post(postings=split_postings(f"orders:{run}c{w}-{i}", i), overdraft=HOT)

    return run_writers(writers, per_writer, post)


def _bulk(run: str, batches: int, batch_size: int) -> float:
    started = time.perf_counter()
    postings = 0
    for b in range(batches):
        items = [
            {"postings": split_postings(f"orders:{run}-b{b}-{i}", i), "overdraft": HOT}
            for i in range(batch_size)
        ]
        transactions_post_bulk(items=items, atomic=True)
        postings += 4 * batch_size
    return postings / (time.perf_counter() - started)


def _history_postings() -> int:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM ledger_posting p JOIN ledger_account a "
            "ON a.id = p.destination_id WHERE a.address = %s",
            [HISTORY_ACCOUNT],
        )
        return int(cursor.fetchone()[0])


def ensure_history(postings: int) -> int:
    """Give HISTORY_ACCOUNT at least `postings` postings (world -> it, 1 minor unit each, 10
    per transaction), with set-based SQL: transactions, postings, the sealer queue and the
    balance rows, all inserts (the ledger is append-only), in one database transaction."""
    have = _history_postings()
    missing = postings - have
    if missing <= 0:
        return have
    per_tx = 10
    txs = (missing + per_tx - 1) // per_tx
    transaction_post(postings=[PostingInput("world", HISTORY_ACCOUNT, ASSET, 1)])
    from django.db import transaction as db_transaction

    with db_transaction.atomic(), connection.cursor() as cursor:
        # Generated rows are consistent by construction: skip the per-row foreign-key checks
        # (a superuser-only setting for this transaction; without it the checks just run).
        cursor.execute("SAVEPOINT bench_replica")
        try:
            cursor.execute("SET LOCAL session_replication_role = replica")
            cursor.execute("RELEASE SAVEPOINT bench_replica")
        except DatabaseError:
            cursor.execute("ROLLBACK TO SAVEPOINT bench_replica")
        cursor.execute(
            "SELECT (SELECT id FROM ledger_account WHERE address = 'world'), "
            "(SELECT id FROM ledger_account WHERE address = %s)",
            [HISTORY_ACCOUNT],
        )
        world, target = cursor.fetchone()
        cursor.execute(
            "CREATE TEMP TABLE bench_ids ON COMMIT DROP AS SELECT "
            "nextval('ledger_transaction_id_seq'::regclass) AS id, "
            "now() - (g || ' seconds')::interval AS ts FROM generate_series(1, %s) g",
            [txs],
        )
        cursor.execute(
            "INSERT INTO ledger_transaction (id, reference, timestamp, inserted_at, metadata) "
            'SELECT id, NULL, ts, now(), \'{"bench": "history"}\'::jsonb FROM bench_ids'
        )
        cursor.execute(
            "INSERT INTO ledger_unsealed (transaction_id) SELECT id FROM bench_ids ORDER BY id"
        )
        cursor.execute(
            "INSERT INTO ledger_posting "
            "(transaction_id, index, source_id, destination_id, asset, amount, timestamp) "
            "SELECT b.id, k, %s, %s, %s, 1, b.ts FROM bench_ids b, generate_series(0, %s) k",
            [world, target, ASSET, per_tx - 1],
        )
        total = txs * per_tx
        for account_id, column in ((target, "input"), (world, "output")):
            cursor.execute(
                "INSERT INTO ledger_balance AS b (account_id, asset, shard, input, output) "
                f"VALUES (%s, %s, 0, {'%s, 0' if column == 'input' else '0, %s'}) "
                "ON CONFLICT (account_id, asset, shard) DO UPDATE SET "
                f"{column} = b.{column} + EXCLUDED.{column}",
                [account_id, ASSET, total],
            )
    with connection.cursor() as cursor:
        cursor.execute("VACUUM (ANALYZE) ledger_posting, ledger_balance")
    return _history_postings()


def _balance_reads(rounds: int) -> tuple[float, float]:
    for _ in range(50):
        balance_get(address=HISTORY_ACCOUNT, asset=ASSET)
    samples = []
    for _ in range(rounds):
        started = time.perf_counter()
        balance_get(address=HISTORY_ACCOUNT, asset=ASSET)
        samples.append(time.perf_counter() - started)
    p50 = statistics.median(samples) * 1000
    p99 = sorted(samples)[int(len(samples) * 0.99) - 1] * 1000
    return p50, p99


def history_checkpoints() -> int:
    """Checkpoint runs every 15 minutes (aligned, so later runs reuse them) over the history
    account's span, as the beat task would have written them. Returns how many exist there."""
    from datetime import timedelta

    from ledger.services.checkpoints import checkpoints_run

    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT min(p.timestamp), max(p.timestamp) FROM ledger_posting p "
            "JOIN ledger_account a ON a.id = p.destination_id WHERE a.address = %s",
            [HISTORY_ACCOUNT],
        )
        first, last = cursor.fetchone()
    at = first.replace(minute=first.minute - first.minute % 15, second=0, microsecond=0)
    count = 0
    while at <= last + timedelta(minutes=15):
        checkpoints_run(at=at, prune=False)
        at += timedelta(minutes=15)
        count += 1
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE ledger_checkpointrun, ledger_checkpoint")
    return count


def asof_reads(rounds: int) -> tuple[float, float, float]:
    """p50 and p99 of balance_get(at=...) at instants spread over the history, and the p50
    of the plain sum (volumes_get up to the instant) on a tenth as many."""
    from ledger.selectors import volumes_get

    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT min(p.timestamp), max(p.timestamp) FROM ledger_posting p "
            "JOIN ledger_account a ON a.id = p.destination_id WHERE a.address = %s",
            [HISTORY_ACCOUNT],
        )
        first, last = cursor.fetchone()
    span = last - first
    instants = [first + span * (((i * 7919) % 10007) / 10007) for i in range(rounds)]
    for at in instants[:50]:
        balance_get(address=HISTORY_ACCOUNT, asset=ASSET, at=at)
    samples = []
    for at in instants:
        started = time.perf_counter()
        balance_get(address=HISTORY_ACCOUNT, asset=ASSET, at=at)
        samples.append(time.perf_counter() - started)
    plain = []
    for at in instants[: max(10, rounds // 10)]:
        started = time.perf_counter()
        volumes_get(address=HISTORY_ACCOUNT, asset=ASSET, end=at, end_inclusive=True)
        plain.append(time.perf_counter() - started)
    return (
        statistics.median(samples) * 1000,
        sorted(samples)[int(len(samples) * 0.99) - 1] * 1000,
        statistics.median(plain) * 1000,
    )


RAW_DDL = [
    "CREATE TABLE IF NOT EXISTS ledger_bench_raw_tx (id bigserial PRIMARY KEY, "
    "timestamp timestamptz NOT NULL, metadata jsonb NOT NULL)",
    "CREATE TABLE IF NOT EXISTS ledger_bench_raw_posting (transaction_id bigint NOT NULL, "
    "index int NOT NULL, source text NOT NULL, destination text NOT NULL, asset text NOT NULL, "
    "amount bigint NOT NULL, PRIMARY KEY (transaction_id, index))",
]
RAW_SQL = (
    "WITH t AS (INSERT INTO ledger_bench_raw_tx (timestamp, metadata) "
    "VALUES (now(), '{}') RETURNING id) "
    "INSERT INTO ledger_bench_raw_posting "
    "SELECT t.id, p.i - 1, p.s, p.d, p.a, p.m FROM t, "
    "unnest(%s::text[], %s::text[], %s::text[], %s::bigint[]) WITH ORDINALITY AS p(s, d, a, m, i)"
)


def _raw_sql_poster(run: str) -> Any:
    """A function posting order i with the least SQL (see the module docstring)."""
    import psycopg

    connection.ensure_connection()
    with connection.cursor() as cursor:
        for ddl in RAW_DDL:
            cursor.execute(ddl)
    raw_cursor = psycopg.Cursor(connection.connection)

    def post(i: int) -> None:
        ps = split_postings(f"orders:{run}-raw-{i}", i)
        raw_cursor.execute(
            RAW_SQL,
            [
                [p.source for p in ps],
                [p.destination for p in ps],
                [p.asset for p in ps],
                [p.amount for p in ps],
            ],
            prepare=True,
        )

    return post


def _raw_sql_drop() -> None:
    with connection.cursor() as cursor:
        cursor.execute("DROP TABLE IF EXISTS ledger_bench_raw_posting, ledger_bench_raw_tx")


class Sizes(NamedTuple):
    serial: int  # transactions, one writer (interleaved with the raw-SQL ceiling)
    per_writer: int  # transactions per writer, 4 writers
    bulk_batches: int  # batches of BULK_BATCH transactions
    history: int  # postings on the account whose balance is read
    reads: int  # balance reads timed


SIZES = {
    True: Sizes(serial=1000, per_writer=500, bulk_batches=4, history=20_000, reads=1000),
    False: Sizes(serial=5000, per_writer=2500, bulk_batches=40, history=1_000_000, reads=2000),
}
BULK_BATCH = 500
ROUNDS = 5


def _backend_cpu_s() -> float | None:
    """CPU seconds used so far by this connection's PostgreSQL backend (local server only)."""
    connection.ensure_connection()
    pid = connection.connection.info.backend_pid  # type: ignore[union-attr]
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class _Meter:
    """Wall time, this process's CPU and the backend's CPU, summed over measured stretches."""

    def __init__(self) -> None:
        self.wall = self.client_cpu = 0.0
        self.backend_cpu: float | None = 0.0

    def measure(self, fn: Any) -> None:
        backend = _backend_cpu_s()
        cpu, wall = time.process_time(), time.perf_counter()
        fn()
        self.wall += time.perf_counter() - wall
        self.client_cpu += time.process_time() - cpu
        after = _backend_cpu_s()
        if backend is None or after is None or self.backend_cpu is None:
            self.backend_cpu = None
        else:
            self.backend_cpu += after - backend


def _per_tx_us(meter: _Meter, n: int) -> dict[str, int | None]:
    backend = meter.backend_cpu
    return {
        "wall": round(meter.wall / n * 1e6),
        "client_cpu": round(meter.client_cpu / n * 1e6),
        "db_cpu": None if backend is None else round(backend / n * 1e6),
    }


def _serial_and_raw(run: str, count: int) -> tuple[_Meter, _Meter, int]:
    """Our serial rate and the raw-SQL ceiling, measured in alternating rounds so that a noisy
    machine slows both alike."""
    per_round = max(1, count // ROUNDS)
    ours, raw = _Meter(), _Meter()
    _post_orders(run + "w", 0, min(200, count))  # warm the prepared statement
    raw_post = _raw_sql_poster(run)
    for i in range(min(200, count)):
        raw_post(i)
    try:
        for r in range(ROUNDS):
            first = r * per_round
            ours.measure(lambda first=first: _post_orders(run, first, per_round))
            raw.measure(lambda first=first: [raw_post(i) for i in range(first, first + per_round)])
    finally:
        _raw_sql_drop()
    return ours, raw, per_round * ROUNDS


@benchmark("ledger")
def bench_ledger(quick: bool) -> dict[str, Any]:
    run = uuid.uuid4().hex[:8]
    sizes = SIZES[quick]
    _setup_accounts()
    # Autovacuum may be off on a benchmark server: start from vacuumed, analyzed tables, as
    # a production database with autovacuum would be.
    with connection.cursor() as cursor:
        cursor.execute("VACUUM (ANALYZE) ledger_balance, ledger_account, ledger_unsealed")
        cursor.execute("ANALYZE ledger_transaction, ledger_posting")
    figures: dict[str, Any] = {}
    figures["load_avg_1m"] = round(os.getloadavg()[0], 2)  # others' load skews every figure
    ours, raw, n = _serial_and_raw(run + "s", sizes.serial)
    serial = n / ours.wall
    figures["serial_tx_per_s"] = round(serial)
    # where a serial transaction's time goes (microseconds): this process's CPU (Python,
    # psycopg), the PostgreSQL backend's CPU (the function, the commit), the rest is waiting
    # (fsync, scheduling)
    figures["serial_us_per_tx"] = {
        "wall": round(ours.wall / n * 1e6),
        "client_cpu": round(ours.client_cpu / n * 1e6),
        "db_cpu": None if ours.backend_cpu is None else round(ours.backend_cpu / n * 1e6),
    }
    figures["raw_sql_us_per_tx"] = {
        "wall": round(raw.wall / n * 1e6),
        "client_cpu": round(raw.client_cpu / n * 1e6),
        "db_cpu": None if raw.backend_cpu is None else round(raw.backend_cpu / n * 1e6),
    }
    figures |= writer_figures("contention", _contention(run + "c", 4, sizes.per_writer))
    figures["bulk_postings_per_s"] = round(_bulk(run + "b", sizes.bulk_batches, BULK_BATCH))
    started = time.perf_counter()
    figures["balance_read_postings"] = ensure_history(sizes.history)
    figures["history_setup_s"] = round(time.perf_counter() - started, 1)
    p50, p99 = _balance_reads(sizes.reads)
    figures["balance_read_p50_ms"] = round(p50, 3)
    figures["balance_read_p99_ms"] = round(p99, 3)
    started = time.perf_counter()
    figures["checkpoint_runs"] = history_checkpoints()
    figures["checkpoint_setup_s"] = round(time.perf_counter() - started, 1)
    asof_p50, asof_p99, plain_p50 = asof_reads(sizes.reads)
    figures["balance_asof_p50_ms"] = round(asof_p50, 3)
    figures["balance_asof_p99_ms"] = round(asof_p99, 3)
    figures["balance_asof_plain_p50_ms"] = round(plain_p50, 3)
    # the sealer (after commit, single, in order) must outrun the writers
    from ledger.services import transactions_seal

    started = time.perf_counter()
    sealed = transactions_seal(batch_size=5000, max_batches=2 if quick else 4)
    figures["seal_tx_per_s"] = round(sealed / (time.perf_counter() - started)) if sealed else None
    figures["raw_sql_tx_per_s"] = round(n / raw.wall)
    figures["serial_vs_raw"] = round(serial / (n / raw.wall), 2)
    figures["sizes"] = {
        "serial": sizes.serial,
        "contention": 4 * sizes.per_writer,
        "bulk_transactions": sizes.bulk_batches * BULK_BATCH,
    }
    return figures


#: the product's payment and split templates (fixed amounts): see bench_numscript
FLOWS = Path(__file__).resolve().parent.parent / "marketplace/flows"
FLOW_PAYMENT = (FLOWS / "payment.num").read_text()
FLOW_SPLIT = (FLOWS / "split.num").read_text()

ORDER_SCRIPT = """\
vars {
  account $order
  account $rider
  account $restaurant
}
send [USD/2 5000] (
  source = @stripe:balance allowing unbounded overdraft
  destination = $order
)
send [USD/2 500] ( source = $order destination = $rider )
send [USD/2 3750] ( source = $order destination = $restaurant )
send [USD/2 *] ( source = $order destination = @platform:fees )
"""


def _order_vars(order: str, i: int) -> dict[str, str]:
    """ORDER_SCRIPT's vars for order i: the same postings as split_postings(order, i)."""
    return {
        "order": order,
        "rider": f"riders:{(i * 7) % RIDERS:04d}",
        "restaurant": f"restaurants:{i % RESTAURANTS:04d}",
    }


def _renamed(postings: Any, names: dict[str, str]) -> list[PostingInput]:
    """A script's postings (from one run) with its accounts renamed: its plain twin."""
    return [
        PostingInput(
            names.get(p.source, p.source),
            names.get(p.destination, p.destination),
            p.asset,
            p.amount,
        )
        for p in postings
    ]


@benchmark("numscript")
def bench_numscript(quick: bool) -> dict[str, Any]:
    """The interpreter alone (ledger.numscript.bench), then scripts posted through
    `transaction_post(script=...)` against the same postings posted plain, in alternating
    rounds on the same database (a noisy machine slows both alike):

    - script_tx_per_s / plain_tx_per_s / script_vs_plain: the marketplace split
      (SPLIT_SCRIPT: the delivery fee to the rider, the restaurant's `commission` metadata to
      platform:fees, the rest to the restaurant, from a funded order account), and the same
      three postings posted plain, the order account funds-checked in both; from its second
      run per restaurant, the script is one write that computes the send-all on the locked
      balance and checks the metadata (ledger/README.md);
    - order_script_tx_per_s / order_plain_tx_per_s / order_script_vs_plain: `bench ledger`'s
      workload (ORDER_SCRIPT: stripe:balance, unbounded, to a new order account, then split
      from it) against split_postings;
    - flow_script_tx_per_s / flow_plain_tx_per_s / flow_script_vs_plain: the product's own
      split template (marketplace/flows/split.num: a fixed amount from the funded order to the
      rider, platform:fees and the restaurant), which posts without any read from its second
      run (speculation, ledger/README.md), and the same postings posted plain, the order
      account funds-checked in both;
    - script_contention_tx_per_s / _errors / _row_lock_waits / _writers_by_state (as `bench
      ledger`'s): ORDER_SCRIPT from 4 writers through the hot accounts (stripe:balance,
      platform:fees), order accounts checked;
    - flow_contention_tx_per_s / _errors / _row_lock_waits: the product's order flow from 4
      writers (marketplace/flows/payment.num then split.num per order: script transactions/s),
      the same hot accounts, order accounts checked; flow_processes_*: the same from 4 writer
      processes instead of 4 threads of this one (the product's writers are processes: no
      interpreter lock shared between them);
    - script_post_p50_ms, interpreter_p50_ms, store_p50_ms (database time of the script's
      reads), interpreter_share: of the split script's posts."""
    from ledger.numscript import StaticStore, parse, run
    from ledger.numscript.bench import SPLIT_SCRIPT, SPLIT_VARS, bench_interpreter
    from ledger.services import account_metadata_set
    from ledger.services.scripts import script_post

    figures: dict[str, Any] = dict(bench_interpreter(quick))
    tag = uuid.uuid4().hex[:8]
    count = 200 if quick else 2000
    per_round = count // ROUNDS
    amount = int(SPLIT_VARS["delivery_fee"].split()[1]) * 10
    restaurants = [f"restaurants:{i:04d}" for i in range(20)]
    _setup_accounts()
    for restaurant in restaurants:
        account_metadata_set(address=restaurant, metadata={"commission": "15%"})
    orders = [f"orders:{tag}-ns-{i}" for i in range(2 * count + 100)]
    flow_orders = [f"orders:{tag}-fl-{i}" for i in range(2 * count + 100)]
    for start in range(0, len(orders), 500):
        transactions_post_bulk(
            items=[
                {"postings": [PostingInput("stripe:balance", o, ASSET, amount)], "overdraft": HOT}
                for o in orders[start : start + 500]
            ]
        )
        transactions_post_bulk(
            items=[
                {"postings": [PostingInput("stripe:balance", o, ASSET, amount)], "overdraft": HOT}
                for o in flow_orders[start : start + 500]
            ]
        )
    with connection.cursor() as cursor:
        cursor.execute("VACUUM (ANALYZE) ledger_balance, ledger_account, ledger_unsealed")

    def split_vars(i: int) -> dict[str, str]:
        return {
            **SPLIT_VARS,
            "order": orders[i],
            "restaurant": restaurants[i % len(restaurants)],
            "rider": f"riders:{i % RIDERS:04d}",
        }

    # the plain twin of the split script: the interpreter's postings for a funded order
    template = run(
        parse(SPLIT_SCRIPT),
        vars=split_vars(0),
        store=StaticStore(
            balances={orders[0]: {ASSET: amount}},
            metadata={restaurants[0]: {"commission": "15%"}},
        ),
    ).postings

    def split_plain(i: int) -> None:
        v = split_vars(i)
        names = {orders[0]: v["order"], "riders:0000": v["rider"], restaurants[0]: v["restaurant"]}
        transaction_post(postings=_renamed(template, names))

    def flow_vars(i: int) -> dict[str, str]:
        return {
            "amount": f"{ASSET} {amount}",
            "delivery_fee": SPLIT_VARS["delivery_fee"],
            "order": flow_orders[i],
            "restaurant": restaurants[i % len(restaurants)],
            "rider": f"riders:{i % RIDERS:04d}",
            "commission": "15%",
        }

    flow_template = run(
        parse(FLOW_SPLIT),
        vars=flow_vars(0),
        store=StaticStore(balances={flow_orders[0]: {ASSET: amount}}),
    ).postings

    def flow_plain(i: int) -> None:
        v = flow_vars(i)
        names = {
            flow_orders[0]: v["order"],
            "riders:0000": v["rider"],
            restaurants[0]: v["restaurant"],
        }
        transaction_post(postings=_renamed(flow_template, names))

    def flow_script(i: int) -> None:
        transaction_post(script=FLOW_SPLIT, vars=flow_vars(i))

    totals: list[float] = []
    interpreter: list[float] = []
    store: list[float] = []

    def split_script(i: int, timed: bool = True) -> None:
        timings: dict[str, float] = {}
        t0 = time.perf_counter()
        script_post(
            script=SPLIT_SCRIPT,
            vars=split_vars(i),
            reference=None,
            metadata=None,
            timestamp=None,
            feature_flags=(),
            dry_run=False,
            timings=timings,
        )
        if timed:
            totals.append(time.perf_counter() - t0)
            interpreter.append(timings["interpreter"])
            store.append(timings["store"])

    def order_plain(i: int) -> None:
        transaction_post(postings=split_postings(f"orders:{tag}-op-{i}", i), overdraft=HOT)

    def order_script(i: int) -> None:
        transaction_post(script=ORDER_SCRIPT, vars=_order_vars(f"orders:{tag}-os-{i}", i))

    # warm up: prepared statements, the parse cache, the templates' read plans
    for i in range(2 * count, 2 * count + 50):
        split_script(i, timed=False)
        split_plain(i + 50)
        order_script(count + i)
        order_plain(count + i)
        flow_script(i)
        flow_plain(i + 50)
    meters = {
        name: _Meter()
        for name in (
            "split_script",
            "split_plain",
            "order_script",
            "order_plain",
            "flow_script",
            "flow_plain",
        )
    }

    def each(fn: Any, indexes: range) -> Any:
        def go() -> None:
            for i in indexes:
                fn(i)

        return go

    for r in range(ROUNDS):
        first = r * per_round
        script_range = range(first, first + per_round)
        plain_range = range(count + first, count + first + per_round)
        meters["split_script"].measure(each(split_script, script_range))
        meters["split_plain"].measure(each(split_plain, plain_range))
        meters["order_script"].measure(each(order_script, script_range))
        meters["order_plain"].measure(each(order_plain, script_range))
        meters["flow_script"].measure(each(flow_script, script_range))
        meters["flow_plain"].measure(each(flow_plain, plain_range))
    n = per_round * ROUNDS
    rate = {name: n / meter.wall for name, meter in meters.items()}
    figures["load_avg_1m"] = round(os.getloadavg()[0], 2)
    figures["script_tx_per_s"] = round(rate["split_script"])
    figures["plain_tx_per_s"] = round(rate["split_plain"])
    figures["script_vs_plain"] = round(rate["split_script"] / rate["split_plain"], 2)
    figures["order_script_tx_per_s"] = round(rate["order_script"])
    figures["order_plain_tx_per_s"] = round(rate["order_plain"])
    figures["order_script_vs_plain"] = round(rate["order_script"] / rate["order_plain"], 2)
    figures["flow_script_tx_per_s"] = round(rate["flow_script"])
    figures["flow_plain_tx_per_s"] = round(rate["flow_plain"])
    figures["flow_script_vs_plain"] = round(rate["flow_script"] / rate["flow_plain"], 2)
    # where a split script's time goes (µs): this process's CPU, the backend's, the rest waits
    figures["script_us_per_tx"] = {
        name: _per_tx_us(meters[name], n)
        for name in ("split_script", "split_plain", "flow_script", "flow_plain")
    }
    figures["script_post_p50_ms"] = round(statistics.median(totals) * 1000, 3)
    figures["interpreter_p50_ms"] = round(statistics.median(interpreter) * 1000, 3)
    figures["store_p50_ms"] = round(statistics.median(store) * 1000, 3)
    figures["interpreter_share"] = round(sum(interpreter) / sum(totals), 3)

    per_writer = 250 if quick else 1500

    def contended(w: int, i: int) -> None:
        transaction_post(script=ORDER_SCRIPT, vars=_order_vars(f"orders:{tag}-sc{w}-{i}", i))

    figures |= writer_figures("script_contention", run_writers(4, per_writer, contended))

    # the product's own order flow from 4 writers: payment.num (stripe:balance, unbounded, to
    # the order through the payment's transit account; the fee back to stripe:balance), then
    # split.num (the order's amount, funds-checked, to the rider, platform:fees and the
    # restaurant): two script transactions per order through the hot accounts
    def flow_order(w: int, i: int, kind: str = "fc") -> None:
        order = f"orders:{tag}-{kind}{w}-{i}"
        transaction_post(
            script=FLOW_PAYMENT,
            vars={
                "amount": f"{ASSET} {amount}",
                "fee": f"{ASSET} {amount // 30}",
                "payment": f"payments:{tag}-{kind}{w}-{i}",
                "order": order,
            },
        )
        transaction_post(script=FLOW_SPLIT, vars={**flow_vars(i), "order": order})

    flows = run_writers(4, per_writer // 2, flow_order)
    figures |= writer_figures("flow_contention", flows, tx_per_call=2)
    # the same from 4 writer processes, as the product runs its writers
    flows = run_writer_processes(4, per_writer // 2, lambda w, i: flow_order(w, i, "fp"))
    figures |= writer_figures("flow_processes", flows, tx_per_call=2)
    figures["load_avg_1m_end"] = round(os.getloadavg()[0], 2)
    return figures
