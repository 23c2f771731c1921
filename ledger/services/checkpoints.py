"""Balance checkpoints: the balance of every (account, asset) at chosen instants, so that a past
balance, the balances of a pattern or the balance sheet as of a date read one checkpoint plus
the postings of a bounded range instead of the whole history. Derived data: never read by the
write path, not part of the hash chain, rebuildable from the postings at any time
(`checkpoints_rebuild`, `manage.py ledger checkpoints rebuild`). Imports nothing above
ledger.models.

A run at instant T stores, per (account, asset) with a non-zero balance, the sum of the
postings with `timestamp <= T` of the transactions with `id <= W` (`covers_tx_id`). Every run
covers the same W: when W rises from W0 to W1, the postings of the transactions in (W0, W1] are
folded into every run whose instant they precede, in the same database transaction. A reader
(ledger.selectors) then adds, in one statement (one snapshot):
  - the postings with T < timestamp <= at (the bounded range, through the account indexes), and
  - the postings of transactions above W with timestamp <= T (back-dated, or committed late),
    a range of the primary key bounded by the writes since the last run.

W must never count a transaction that may still commit: ids are taken from a sequence at
insert, so a transaction can commit after a later id did. `watermark_get` reads the last id
the sequence handed out and then waits until every transaction of the database that was open
at that moment has ended (pg_stat_activity; the app role is given pg_read_all_stats by
`manage.py db_roles` so it sees every role's sessions). On SQLite writers are serialized and
ids are given in commit order: the largest visible id is safe at once.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from django.db import connection, transaction
from django.utils import timezone

from ledger import conf
from ledger.domain import validate_timestamp

CHECKPOINT_LOCK_KEY = 0x4C45444745524350  # "LEDGERCP": pg_advisory_xact_lock key of the task
WAIT_SECONDS = 10.0  # at most this long for the open transactions to end (else W stays)


@dataclass(frozen=True, slots=True)
class CheckpointRunResult:
    run_id: int | None  # None: no run was written (one exists at that instant, or no W yet)
    at: datetime
    covers_tx_id: int | None
    rows: int  # checkpoint rows of the new run
    folded: int  # postings folded into the existing runs when W rose
    pruned: int  # runs removed by the retention rule


def watermark_get(*, wait: float = WAIT_SECONDS) -> int | None:
    """The highest transaction id W such that every transaction with an id <= W has committed
    (and is visible to the next statement) or never will. None if the transactions open now
    did not end within `wait` seconds."""
    with connection.cursor() as cursor:
        if connection.vendor != "postgresql":
            cursor.execute("SELECT coalesce(max(id), 0) FROM ledger_transaction")
            return int(cursor.fetchone()[0])
        # Ids handed out so far (rows inserted with explicit ids count too), then the moment.
        cursor.execute(
            "SELECT greatest("
            " (SELECT coalesce(max(id), 0) FROM ledger_transaction),"
            " coalesce(pg_sequence_last_value("
            "  pg_get_serial_sequence('ledger_transaction', 'id')::regclass), 0))"
        )
        last_id = cursor.fetchone()[0]
        # Read after the id: a transaction holding an id <= last_id began before this instant.
        cursor.execute("SELECT clock_timestamp()")
        t0 = cursor.fetchone()[0]
        deadline = time.monotonic() + wait
        pause = 0.005
        while True:
            # pg_stat_activity is cached per transaction: read it afresh every time.
            cursor.execute(
                "SELECT pg_stat_clear_snapshot(), count(*) FROM pg_stat_activity "
                "WHERE datname = current_database() AND pid <> pg_backend_pid() "
                "AND backend_type = 'client backend' AND xact_start <= %s",
                [t0],
            )
            if cursor.fetchone()[1] == 0:
                return int(last_id)
            if time.monotonic() >= deadline:
                return None
            time.sleep(pause)
            pause = min(pause * 2, 0.2)


def checkpoints_run(
    *, at: datetime | None = None, watermark: int | None = None, prune: bool = True
) -> CheckpointRunResult:
    """Raise every run's W to the current watermark (or `watermark`, for tests), then write a
    run at `at` (default now) unless one exists at that instant, then apply the retention rule
    (LEDGER_CHECKPOINT_KEEP_HOURS: older runs are thinned to the last one of each UTC day)."""
    at = validate_timestamp(at) or timezone.now()
    new_w = watermark_get() if watermark is None else watermark
    # Not durable: derived data, and nothing here calls out; a caller's transaction (a test, a
    # rebuild script) may hold it. The fold and the new W commit together or not at all.
    with transaction.atomic(), connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute("SELECT pg_advisory_xact_lock(%s)", [CHECKPOINT_LOCK_KEY])
        cursor.execute("SELECT max(covers_tx_id) FROM ledger_checkpointrun")
        old_w = cursor.fetchone()[0]
        folded = 0
        if old_w is not None and new_w is not None and new_w > old_w:
            folded = _fold(cursor, old_w, new_w)
        w = new_w if old_w is None else max(old_w, new_w or 0)
        run_id, rows = (None, 0) if w is None else _run_create(cursor, at, w)
        pruned = _prune(cursor) if prune else 0
    return CheckpointRunResult(run_id, at, w, rows, folded, pruned)


def checkpoints_rebuild(*, watermark: int | None = None) -> int:
    """Recompute every run from the postings, at the same instants. Returns how many runs."""
    new_w = watermark_get() if watermark is None else watermark
    if new_w is None:
        raise TimeoutError("open transactions did not end; try again")
    with transaction.atomic(), connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute("SELECT pg_advisory_xact_lock(%s)", [CHECKPOINT_LOCK_KEY])
        cursor.execute("SELECT at FROM ledger_checkpointrun ORDER BY at")
        instants = [row[0] for row in cursor.fetchall()]
        cursor.execute("DELETE FROM ledger_checkpoint")
        cursor.execute("DELETE FROM ledger_checkpointrun")
        for at in instants:
            _run_create(cursor, at, new_w)
    return len(instants)


def _signed_postings(where: str) -> str:
    """(account_id, asset, amount, timestamp) of both sides of the postings `p` matching
    `where`: + on the destination, - on the source."""
    return (
        f"SELECT p.destination_id AS account_id, p.asset, p.amount, p.timestamp "
        f"FROM ledger_posting p WHERE {where} UNION ALL "
        f"SELECT p.source_id, p.asset, -p.amount, p.timestamp FROM ledger_posting p WHERE {where}"
    )


def _fold(cursor, old_w: int, new_w: int) -> int:  # type: ignore[no-untyped-def]
    """Add the postings of transactions in (old_w, new_w] to every run at or after their
    timestamp, and raise every run to new_w. Returns how many postings were read."""
    cursor.execute(
        "SELECT count(*) FROM ledger_posting WHERE transaction_id > %s AND transaction_id <= %s",
        [old_w, new_w],
    )
    count = int(cursor.fetchone()[0])
    if count:
        where = "p.transaction_id > %s AND p.transaction_id <= %s"
        # Each posting counts in every run at or after its timestamp. Summed first per key and
        # per the first such run (an index probe per posting), then spread over the runs from
        # that one on: the work is the postings plus the rows written, not postings x runs
        # (2.7 million back-dated postings before 113 runs: stopped after 18 minutes joined
        # posting by run, 23 s so). A key whose postings cancel out (an order account funded
        # and drained between the same two runs) changes no run and is skipped.
        cursor.execute(
            "WITH d AS ("
            " SELECT (SELECT min(r.at) FROM ledger_checkpointrun r WHERE r.at >= x.timestamp)"
            " AS first_at, x.account_id, x.asset, sum(x.amount) AS amount"
            f" FROM ({_signed_postings(where)}) x"
            " GROUP BY 1, x.account_id, x.asset HAVING sum(x.amount) <> 0"
            ") "
            "INSERT INTO ledger_checkpoint (run_id, account_id, asset, balance) "
            "SELECT r.id, d.account_id, d.asset, sum(d.amount) FROM d "
            # WHERE: SQLite's parser needs one before an upsert's ON CONFLICT
            "JOIN ledger_checkpointrun r ON r.at >= d.first_at WHERE d.first_at IS NOT NULL "
            "GROUP BY r.id, d.account_id, d.asset HAVING sum(d.amount) <> 0 "
            "ON CONFLICT (run_id, account_id, asset) "
            "DO UPDATE SET balance = ledger_checkpoint.balance + excluded.balance",
            [old_w, new_w, old_w, new_w],
        )
    cursor.execute("UPDATE ledger_checkpointrun SET covers_tx_id = %s", [new_w])
    return count


def _run_create(cursor, at: datetime, w: int) -> tuple[int | None, int]:  # type: ignore[no-untyped-def]
    """A run at `at` covering w, from the latest earlier run plus the postings between (or
    from all the postings before the first run). (None, 0) if a run exists at `at`."""
    cursor.execute("SELECT 1 FROM ledger_checkpointrun WHERE at = %s", [at])
    if cursor.fetchone():
        return None, 0
    cursor.execute(
        "SELECT id, at FROM ledger_checkpointrun WHERE at < %s ORDER BY at DESC LIMIT 1", [at]
    )
    base = cursor.fetchone()
    cursor.execute(
        "INSERT INTO ledger_checkpointrun (at, covers_tx_id, created_at) VALUES (%s, %s, %s)",
        [at, w, timezone.now()],
    )
    cursor.execute("SELECT id FROM ledger_checkpointrun WHERE at = %s", [at])
    run_id = int(cursor.fetchone()[0])
    # The range goes through the transactions' timestamp index, then the postings' primary key
    # (a posting's timestamp is its transaction's).
    range_sql = (
        "SELECT p.destination_id AS account_id, p.asset, p.amount FROM ledger_transaction t "
        "JOIN ledger_posting p ON p.transaction_id = t.id WHERE {cond} UNION ALL "
        "SELECT p.source_id, p.asset, -p.amount FROM ledger_transaction t "
        "JOIN ledger_posting p ON p.transaction_id = t.id WHERE {cond}"
    )
    if base is None:
        cond = "t.timestamp <= %s AND t.id <= %s"
        params = [at, w, at, w]
        sql = range_sql.format(cond=cond)
    else:
        cond = "t.timestamp > %s AND t.timestamp <= %s AND t.id <= %s"
        params = [base[1], at, w, base[1], at, w]
        sql = (
            "SELECT account_id, asset, balance AS amount FROM ledger_checkpoint WHERE run_id = %s "
            "UNION ALL " + range_sql.format(cond=cond)
        )
        params = [base[0], *params]
    cursor.execute(
        "INSERT INTO ledger_checkpoint (run_id, account_id, asset, balance) "
        f"SELECT %s, account_id, asset, sum(amount) FROM ({sql}) x "
        "GROUP BY account_id, asset HAVING sum(amount) <> 0",
        [run_id, *params],
    )
    return run_id, max(cursor.rowcount, 0)


def _prune(cursor) -> int:  # type: ignore[no-untyped-def]
    """Runs older than LEDGER_CHECKPOINT_KEEP_HOURS are kept only if last of their UTC day."""
    cutoff = timezone.now() - timedelta(hours=float(conf.get("LEDGER_CHECKPOINT_KEEP_HOURS")))
    cursor.execute("SELECT id, at FROM ledger_checkpointrun WHERE at < %s ORDER BY at", [cutoff])
    last_of_day: dict[object, int] = {}
    ids = []
    for run_id, at in cursor.fetchall():
        ids.append(run_id)
        last_of_day[_utc(at).date()] = run_id
    doomed = sorted(set(ids) - set(last_of_day.values()))
    for start in range(0, len(doomed), 500):
        chunk = doomed[start : start + 500]
        marks = ", ".join(["%s"] * len(chunk))
        cursor.execute(f"DELETE FROM ledger_checkpoint WHERE run_id IN ({marks})", chunk)
        cursor.execute(f"DELETE FROM ledger_checkpointrun WHERE id IN ({marks})", chunk)
    return len(doomed)


def _utc(value: datetime | str) -> datetime:
    if isinstance(value, str):  # SQLite without converters
        value = datetime.fromisoformat(value)
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC)
