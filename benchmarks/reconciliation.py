"""`python manage.py bench reconciliation [--quick]`: the set-based matcher at scale.

Setup (not timed): N Stripe balance transactions and N ledger transactions (with their
postings) are generated directly in PostgreSQL with `INSERT ... SELECT ... generate_series`,
into a dedicated schema `recon_bench` whose tables are copies (`LIKE ... INCLUDING ...`, same
columns, constraints and indexes, built after the load) of the real ledger and reconciliation
tables. This bypasses the ledger's write path on purpose (one statement instead of a million
`transaction_post` calls), and it leaves the real tables, their append-only triggers and any
other benchmark's data untouched: the schema is dropped at the end. While it runs, the
connection's `search_path` is `recon_bench, public`, so the matcher's unqualified SQL reads
and writes the copies.

The workload is one day: 85% card charges (gross, Stripe fee 2.9% + 30), 10% refunds, 5%
transfers (payout settles), each mirrored by one ledger transaction carrying
`stripe_object` / `stripe_balance_transaction` metadata, like the flows write them. In every
block of 1,000: one fee missing, one amount mismatch, one charge never booked (its ledger
transaction names a ghost charge instead: missing at Stripe), one booked twice, one never
booked at all, one with an unknown reporting category: 7 problem keys and 1 ghost per 1,000.

Timed: `reconciliation.services.match_run` (staging aggregates, the FULL OUTER JOIN, the
classification and the INSERT ... SELECT of every item, matched ones included), i.e. what a
nightly run spends in the database. Peak RSS is this Python process's (`ru_maxrss`);
PostgreSQL's own memory (work_mem per sort/hash, RECONCILIATION_WORK_MEM) is separate.
"""

from __future__ import annotations

import os
import resource
import time
from datetime import UTC, datetime, timedelta
from typing import Any

from django.db import connection

from ops.bench import benchmark

SCHEMA = "recon_bench"
TABLES = (
    "ledger_account",
    "ledger_transaction",
    "ledger_posting",
    "reconciliation_balance_transaction",
    "reconciliation_run",
    "reconciliation_item",
)
DAY = datetime(2026, 1, 15, tzinfo=UTC)
ACCOUNTS = {
    1: "stripe:balance",
    2: "platform:stripe_fees",
    3: "platform:losses",
    4: "restaurants:001:payouts:1",
}
ORDER_ACCOUNTS = 1000  # orders:<n> for n in 0..999 (ids 1000..1999)


def _rss_mb() -> float:
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def _kind_sql() -> str:
    # 0..16: charge (85%), 17..18: refund (10%), 19: transfer (5%)
    return "CASE WHEN i % 20 < 17 THEN 'charge' WHEN i % 20 < 19 THEN 'refund' ELSE 'transfer' END"


def _setup(cursor: Any, n: int) -> None:
    start = int(DAY.timestamp())
    cursor.execute(f"DROP SCHEMA IF EXISTS {SCHEMA} CASCADE")
    cursor.execute(f"CREATE SCHEMA {SCHEMA}")
    for table in TABLES:
        cursor.execute(
            f"CREATE TABLE {SCHEMA}.{table} (LIKE public.{table} INCLUDING DEFAULTS "
            "INCLUDING CONSTRAINTS INCLUDING IDENTITY INCLUDING GENERATED)"
        )
    values = ", ".join(
        f"({i}, '{address}', '{{}}'::jsonb, now())" for i, address in ACCOUNTS.items()
    )
    cursor.execute(
        f"INSERT INTO {SCHEMA}.ledger_account (id, address, metadata, created_at) VALUES {values}"
    )
    cursor.execute(
        f"INSERT INTO {SCHEMA}.ledger_account (id, address, metadata, created_at) "
        f"SELECT 1000 + g, 'orders:' || g, '{{}}'::jsonb, now() "
        f"FROM generate_series(0, {ORDER_ACCOUNTS - 1}) g"
    )
    # The Stripe side: N balance transactions over one day.
    cursor.execute(
        f"""INSERT INTO {SCHEMA}.reconciliation_balance_transaction
    (id, source_id, source_key, source_type, type, reporting_category, amount, fee, net,
     currency, asset, status, created, available_on, raw, source_object, imported_at)
SELECT 'txn_b' || i, src, src, kind, cat, cat, amount, fee, amount - fee, 'usd', 'USD/2',
    'available', to_timestamp(ts), to_timestamp(ts),
    jsonb_build_object('id', 'txn_b' || i, 'object', 'balance_transaction', 'amount', amount,
        'fee', fee, 'net', amount - fee, 'currency', 'usd', 'type', cat,
        'reporting_category', cat, 'source', src, 'status', 'available', 'created', ts,
        'available_on', ts, 'balance_type', 'payments'),
    jsonb_build_object('id', src, 'object', kind), now()
FROM (
    SELECT i, kind,
        CASE WHEN i % 1000 = 6 THEN 'brand_new_category' ELSE kind END AS cat,
        CASE kind WHEN 'charge' THEN 'ch_b' WHEN 'refund' THEN 're_b' ELSE 'tr_b' END || i AS src,
        CASE kind WHEN 'charge' THEN 1000 + (i * 7919) % 9000
                  WHEN 'refund' THEN -(500 + i % 2000) ELSE -(1000 + i % 5000) END AS amount,
        CASE kind WHEN 'charge' THEN ((1000 + (i * 7919) % 9000) * 29 + 500) / 1000 + 30
                  ELSE 0 END AS fee,
        {start} + (i::bigint * 86399) / {n} AS ts
    FROM (SELECT i, {_kind_sql()} AS kind FROM generate_series(1::bigint, {n}) i) k
) x"""
    )
    # The ledger side: one transaction per balance transaction (see the module doc).
    ledger_rows = f"""
SELECT b.i AS i, b.i AS tx_id, b.kind, b.src, b.txn, b.amount, b.fee, b.ts FROM b
WHERE b.i % 1000 NOT IN (3, 5)
UNION ALL SELECT b.i, b.i, b.kind, 'ch_ghost' || b.i, NULL, b.amount, b.fee, b.ts FROM b
WHERE b.i % 1000 = 3
UNION ALL SELECT b.i, {n} + b.i, b.kind, b.src, b.txn, b.amount, b.fee, b.ts FROM b
WHERE b.i % 1000 = 4"""
    base = f"""WITH b AS (
    SELECT i, {_kind_sql()} AS kind,
        CASE WHEN i % 20 < 17 THEN 'ch_b' WHEN i % 20 < 19 THEN 're_b' ELSE 'tr_b' END || i AS src,
        'txn_b' || i AS txn,
        CASE WHEN i % 20 < 17 THEN 1000 + (i * 7919) % 9000
             WHEN i % 20 < 19 THEN -(500 + i % 2000) ELSE -(1000 + i % 5000) END
            - CASE WHEN i % 1000 = 2 THEN 100 ELSE 0 END AS amount,
        CASE WHEN i % 20 < 17 AND i % 1000 <> 1
             THEN ((1000 + (i * 7919) % 9000) * 29 + 500) / 1000 + 30 ELSE 0 END AS fee,
        to_timestamp({start} + (i::bigint * 86399) / {n} + 1) AS ts
    FROM generate_series(1::bigint, {n}) i
), l AS ({ledger_rows})"""
    cursor.execute(
        f"""{base}
INSERT INTO {SCHEMA}.ledger_transaction (id, reference, timestamp, inserted_at, metadata)
SELECT l.tx_id, 'bench:' || l.tx_id, l.ts, now(),
    jsonb_strip_nulls(jsonb_build_object('stripe_object', l.src,
        'stripe_balance_transaction', l.txn, 'flow', l.kind))
FROM l"""
    )
    cursor.execute(
        f"""{base}
INSERT INTO {SCHEMA}.ledger_posting (transaction_id, index, source_id, destination_id, asset,
    amount, timestamp)
SELECT l.tx_id, 0,
    CASE l.kind WHEN 'charge' THEN 1 WHEN 'refund' THEN 3 ELSE 4 END,
    CASE l.kind WHEN 'charge' THEN 1000 + l.i % {ORDER_ACCOUNTS} ELSE 1 END,
    'USD/2', abs(l.amount), l.ts
FROM l
UNION ALL
SELECT l.tx_id, 1, 2, 1, 'USD/2', l.fee, l.ts FROM l WHERE l.fee > 0"""
    )
    _indexes(cursor)
    for table in TABLES:
        cursor.execute(f"ANALYZE {SCHEMA}.{table}")


def _indexes(cursor: Any) -> None:
    """The real tables' indexes (primary keys, uniques, the expression index on stripe_object),
    built after the load; the ledger's GIN index on metadata serves no read here and is left
    out."""
    cursor.execute(
        "SELECT tablename, indexdef FROM pg_indexes WHERE schemaname = 'public' "
        "AND tablename = ANY(%s)",
        [list(TABLES)],
    )
    for table, definition in cursor.fetchall():
        if " USING gin " in definition:
            continue
        statement = definition.replace(f" ON public.{table} ", f" ON {SCHEMA}.{table} ", 1)
        statement = statement.replace(
            "CREATE UNIQUE INDEX ", "CREATE UNIQUE INDEX IF NOT EXISTS ", 1
        )
        statement = statement.replace("CREATE INDEX ", "CREATE INDEX IF NOT EXISTS ", 1)
        cursor.execute(statement)


@benchmark("reconciliation")
def bench_reconciliation(quick: bool) -> dict[str, Any]:
    from reconciliation.matching import PROBLEMS
    from reconciliation.models import ReconciliationRun
    from reconciliation.services import match_run

    if connection.vendor != "postgresql":
        raise RuntimeError("the reconciliation benchmark needs PostgreSQL (DATABASE_URL)")
    # RECONCILIATION_BENCH_SIZE overrides the size (to check that time grows linearly).
    n = int(os.environ.get("RECONCILIATION_BENCH_SIZE") or (50_000 if quick else 1_000_000))
    if n < 1000 or n % 1000:
        raise ValueError("the benchmark size must be a multiple of 1,000")
    try:
        with connection.cursor() as cursor:
            started = time.perf_counter()
            _setup(cursor, n)
            setup_seconds = time.perf_counter() - started
            cursor.execute(f"SET search_path TO {SCHEMA}, public")
            cursor.execute(f"SELECT count(*) FROM {SCHEMA}.ledger_transaction")
            ledger_transactions = int(cursor.fetchone()[0])
        run = ReconciliationRun.objects.create(
            window_start=DAY,
            window_end=DAY + timedelta(days=1),
            trigger="bench",
            grace_seconds=2 * 86400,
        )
        rss_before = _rss_mb()
        result = match_run(run=run, now=DAY + timedelta(days=30))
        peak = _rss_mb()
        mismatches = sum(v for k, v in result.counts.items() if k in {str(p) for p in PROBLEMS})
    finally:
        with connection.cursor() as cursor:
            cursor.execute("SET search_path TO DEFAULT")
            cursor.execute(f"DROP SCHEMA IF EXISTS {SCHEMA} CASCADE")
    blocks = n // 1000
    return {
        "balance_transactions": n,
        "ledger_transactions": ledger_transactions,
        "items": result.items,
        "seconds": round(result.seconds, 2),
        "matched_per_s": round(n / result.seconds),
        "peak_rss_mb": peak,
        "rss_before_match_mb": rss_before,
        "mismatches_found": mismatches,
        "mismatches_expected": 7 * blocks,  # 6 problem keys + 1 ghost per 1,000
        "counts": result.counts,
        "setup_seconds": round(setup_seconds, 1),
    }
