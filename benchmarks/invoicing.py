"""`python manage.py bench invoicing [--quick]`: a month of orders' documents.

Setup (not timed), PostgreSQL only: 300 restaurants (A, B, C in turn) and 100 riders through
the ORM, then N delivered orders (`bulk_create`) and their ledger transactions — the payment
(`payment:<ch>`: stripe:balance -> payments:<ch> -> orders:<id>) and the split
(`delivery:<id>`: rider, 15% to platform:fees, the rest to the restaurant) — generated with
`INSERT ... SELECT` straight into the ledger's tables, bypassing its write path (balances are
not maintained: use a throw-away database such as `eats_bench`; rows are left there, the
ledger being append-only).

The orders are dated in the latest past month without delivered orders (the database keeps
earlier runs, and the month-end pass must see only this run's), and the generated tables are
ANALYZEd as a live database's would be.

Timed: `invoices_issue` over the N orders (ledger reads, planning, numbering under lock,
inserts, in batches of INVOICING_SWEEP_BATCH), then the month-end pass (commission invoices
and rider statements); `total_s` is the two, the figure the < 60 s goal is about. Then
`invoices check --period` over the month, untimed in the goal (`check_ok`, `check_s`).
Last, numbering throughput: 4 threads with their own connections issuing another M orders
of the same restaurants concurrently (the series locks contend), after which every series
of the run must still be 1..N (`series_with_gaps`).
"""

from __future__ import annotations

import os
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from django.db import connection, connections
from django.utils import timezone

from invoicing.check import invoices_check
from invoicing.models import Invoice
from invoicing.services import invoices_issue, invoices_issue_period, profile_set
from marketplace.models import Order, Restaurant, Rider
from ops.bench import benchmark

RESTAURANTS = 300
RIDERS = 100


def _free_month() -> tuple[str, datetime]:
    """The latest past month without delivered orders (the database keeps earlier runs: the
    month-end pass of this run must see only this run's orders), and an instant in it."""
    start = timezone.now().astimezone(UTC).replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    for _ in range(600):
        start = (start - timedelta(days=1)).replace(day=1)
        end = (start + timedelta(days=32)).replace(day=1)
        if not Order.objects.filter(delivered_at__gte=start, delivered_at__lt=end).exists():
            return f"{start:%Y-%m}", start + timedelta(days=1, hours=12)
    raise RuntimeError("no free month in the last 50 years: use a fresh database")


def _pad(column: str) -> str:
    """SQL for marketplace's `ledger_id`: zero-padded to at least 3 digits (lpad alone would
    cut 1234 to 123)."""
    return f"lpad({column}::text, greatest(3, length({column}::text)), '0')"


def _orders(n: int, restaurants: list[int], riders: list[int], tag: str, at: datetime) -> list[int]:
    now = at
    rows = []
    for i in range(n):
        subtotal = 1000 + (i * 37) % 4000
        delivery = (0, 199, 299, 499)[i % 4]
        rows.append(
            Order(
                restaurant_id=restaurants[i % len(restaurants)],
                rider_id=riders[i % len(riders)],
                subtotal=subtotal,
                delivery_fee=delivery,
                total=subtotal + delivery,
                amount_paid=subtotal + delivery,
                charge_id=f"ch_{tag}_{i}",
                status=Order.Status.DELIVERED,
                paid_at=now,
                delivered_at=now,
            )
        )
    created = Order.objects.bulk_create(rows, batch_size=5000)
    ids = [o.pk for o in created]
    lo, hi = min(ids), max(ids)
    with connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO ledger_account (address, metadata) "
            "SELECT a, '{}'::jsonb FROM (SELECT 'orders:' || id AS a FROM marketplace_order "
            "WHERE id BETWEEN %s AND %s UNION ALL SELECT 'payments:' || charge_id "
            "FROM marketplace_order WHERE id BETWEEN %s AND %s UNION ALL "
            "SELECT unnest(ARRAY['stripe:balance', 'platform:fees']) UNION ALL "
            f"SELECT 'restaurants:' || {_pad('id')} FROM marketplace_restaurant "
            f"UNION ALL SELECT 'riders:' || {_pad('id')} FROM marketplace_rider) s "
            "ON CONFLICT (address) DO NOTHING",
            [lo, hi, lo, hi],
        )
        for prefix, key in (("payment:", "charge_id"), ("delivery:", "id::text")):
            cursor.execute(
                "INSERT INTO ledger_transaction (reference, timestamp, metadata) "
                f"SELECT %s || {key}, %s, jsonb_build_object('order_id', id::text) "
                "FROM marketplace_order WHERE id BETWEEN %s AND %s",
                [prefix, at, lo, hi],
            )
        # postings: (order, index, source, destination, amount) per transaction
        cursor.execute(
            f"""
            WITH o AS (
                SELECT o.id, o.charge_id, o.total, o.delivery_fee,
                       (o.subtotal * 15) / 100 AS fees,
                       o.subtotal - (o.subtotal * 15) / 100 AS rest,
                       'restaurants:' || {_pad("o.restaurant_id")} AS r,
                       'riders:' || {_pad("o.rider_id")} AS d
                FROM marketplace_order o WHERE o.id BETWEEN %s AND %s
            ), p AS (
                SELECT t.id AS tx, x.idx, x.src, x.dst, x.amount
                FROM o JOIN ledger_transaction t ON t.reference = 'payment:' || o.charge_id
                CROSS JOIN LATERAL (VALUES
                    (0, 'stripe:balance', 'payments:' || o.charge_id, o.total),
                    (1, 'payments:' || o.charge_id, 'orders:' || o.id, o.total)
                ) AS x(idx, src, dst, amount)
                UNION ALL
                SELECT t.id, x.idx, x.src, x.dst, x.amount
                FROM o JOIN ledger_transaction t ON t.reference = 'delivery:' || o.id
                CROSS JOIN LATERAL (VALUES
                    (0, 'orders:' || o.id, o.d, o.delivery_fee),
                    (1, 'orders:' || o.id, 'platform:fees', o.fees),
                    (2, 'orders:' || o.id, o.r, o.rest)
                ) AS x(idx, src, dst, amount)
                WHERE x.amount > 0
            )
            INSERT INTO ledger_posting
                (transaction_id, index, source_id, destination_id, asset, amount, timestamp)
            SELECT p.tx, p.idx, s.id, d.id, 'USD/2', p.amount, %s
            FROM p JOIN ledger_account s ON s.address = p.src
                   JOIN ledger_account d ON d.address = p.dst
            """,
            [lo, hi, at],
        )
        # A live database has statistics for these tables; freshly bulk-loaded ones do not
        # until autovacuum gets there, and the planner would scan them whole.
        cursor.execute(
            "ANALYZE marketplace_order, ledger_account, ledger_transaction, ledger_posting, "
            "invoicing_invoice, invoicing_orderinvoicing"
        )
    return ids


def _series_gaps(series: list[str]) -> int:
    """Series (of `series`) whose numbers are not exactly 1..N."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM (SELECT series, year FROM invoicing_invoice "
            "WHERE series = ANY(%s) GROUP BY series, year "
            "HAVING count(*) <> max(number) OR count(DISTINCT number) <> count(*)) g",
            [series],
        )
        return int(cursor.fetchone()[0])


@benchmark("invoicing")
def bench_invoicing(quick: bool) -> dict[str, Any]:
    if connection.vendor != "postgresql":
        return {"skipped": "PostgreSQL only"}
    n = 5_000 if quick else 100_000
    m = 1_000 if quick else 8_000
    tag = uuid.uuid4().hex[:8]
    period, at = _free_month()
    restaurants = Restaurant.objects.bulk_create(
        [Restaurant(name=f"bench {tag} {i}") for i in range(RESTAURANTS)]
    )
    riders = Rider.objects.bulk_create([Rider(name=f"bench {tag} {i}") for i in range(RIDERS)])
    for i, r in enumerate(restaurants):
        profile_set(
            restaurant_id=r.pk,
            model="ABC"[i % 3],
            food_tax_bps=1000,
            effective_from=at - timedelta(days=1),
        )
    r_ids, d_ids = [r.pk for r in restaurants], [d.pk for d in riders]
    started = time.perf_counter()
    ids = _orders(n, r_ids, d_ids, tag, at)
    setup_s = time.perf_counter() - started

    load_before = os.getloadavg()[0]
    before = Invoice.objects.count()
    started = time.perf_counter()
    result = invoices_issue(ids, now=at + timedelta(hours=2))
    issue_s = time.perf_counter() - started
    started = time.perf_counter()
    month_end = (datetime.fromisoformat(f"{period}-01") + timedelta(days=32)).replace(
        day=1, tzinfo=UTC
    )
    period_result = invoices_issue_period(period=period, now=month_end + timedelta(hours=1))
    month_end_s = time.perf_counter() - started
    issued = Invoice.objects.count() - before
    started = time.perf_counter()
    check = invoices_check(period=period, now=month_end + timedelta(hours=2))
    check_s = time.perf_counter() - started

    more = _orders(m, r_ids, d_ids, tag + "c", at)
    errors: list[str] = []
    count_before = Invoice.objects.count()

    def worker(part: list[int]) -> None:
        try:
            invoices_issue(part, now=at + timedelta(hours=3))
        except Exception as exc:  # reported in the figures
            errors.append(repr(exc))
        finally:
            connections.close_all()

    # 4 workers over interleaved slices: every batch of each touches the same 300 restaurant
    # series (and the platform's), so they queue on the series locks.
    threads = [threading.Thread(target=worker, args=(more[k::4],)) for k in range(4)]
    started = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    concurrent_s = time.perf_counter() - started
    concurrent_docs = Invoice.objects.count() - count_before
    series = ["P"] + [f"R{pk:04d}" for pk in r_ids] + [f"D{pk:04d}" for pk in d_ids]
    return {
        "orders": n,
        "period": period,
        "documents": result.count,
        "month_end_documents": period_result.count,
        "documents_in_db": issued,
        "setup_s": round(setup_s, 1),
        "issue_s": round(issue_s, 2),
        "month_end_s": round(month_end_s, 2),
        "total_s": round(issue_s + month_end_s, 2),
        "goal_s": 60,
        "orders_per_s": round(n / issue_s, 1),
        "documents_per_s": round(result.count / issue_s, 1),
        "concurrent_workers": 4,
        "concurrent_orders": m,
        "concurrent_documents_per_s": round(concurrent_docs / concurrent_s, 1),
        "concurrent_errors": len(errors),
        "series_with_gaps": _series_gaps(series),
        "check_ok": check.ok,
        "check_mismatches": len(check.mismatches),
        "check_s": round(check_s, 1),
        "anomalies": len(result.anomalies),
        "load_before": round(load_before, 2),
        "load_after": round(os.getloadavg()[0], 2),
    }
