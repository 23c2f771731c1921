"""`python manage.py bench invoicing [--quick]`: a month of orders' documents.

Setup (not timed), PostgreSQL only: 300 restaurants (A, B, C in turn) and 100 riders through
the ORM, then N delivered orders (`bulk_create`) and their ledger transactions — the payment
(`payment:<ch>`: stripe:balance -> payments:<ch> -> orders:<id>) and the split
(`delivery:<id>`: rider, 15% to platform:fees, the rest to the restaurant) — generated with
`INSERT ... SELECT` straight into the ledger's tables, bypassing its write path (balances are
not maintained: use a throw-away database such as `eats_bench`; rows are left there, the
ledger being append-only).

Timed: `invoices_issue` over the N orders (ledger reads, planning, numbering under lock,
inserts, in batches of INVOICING_SWEEP_BATCH), then the month-end pass (commission invoices
and rider statements), then numbering throughput: 4 threads with their own connections
issuing another M orders of the same restaurants concurrently (the series locks contend).
"""

from __future__ import annotations

import threading
import time
import uuid
from typing import Any

from django.db import connection, connections
from django.utils import timezone

from invoicing.models import Invoice
from invoicing.services import invoices_issue, invoices_issue_period, profile_set
from marketplace.models import Order, Restaurant, Rider
from ops.bench import benchmark

RESTAURANTS = 300
RIDERS = 100


def _orders(n: int, restaurants: list[int], riders: list[int], tag: str) -> list[int]:
    now = timezone.now()
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
            "SELECT 'restaurants:' || lpad(id::text, 3, '0') FROM marketplace_restaurant "
            "UNION ALL SELECT 'riders:' || lpad(id::text, 3, '0') FROM marketplace_rider) s "
            "ON CONFLICT (address) DO NOTHING",
            [lo, hi, lo, hi],
        )
        for prefix, key in (("payment:", "charge_id"), ("delivery:", "id::text")):
            cursor.execute(
                "INSERT INTO ledger_transaction (reference, timestamp, metadata) "
                f"SELECT %s || {key}, now(), jsonb_build_object('order_id', id::text) "
                "FROM marketplace_order WHERE id BETWEEN %s AND %s",
                [prefix, lo, hi],
            )
        # postings: (order, index, source, destination, amount) per transaction
        cursor.execute(
            """
            WITH o AS (
                SELECT o.id, o.charge_id, o.total, o.delivery_fee,
                       (o.subtotal * 15) / 100 AS fees,
                       o.subtotal - (o.subtotal * 15) / 100 AS rest,
                       'restaurants:' || lpad(o.restaurant_id::text, 3, '0') AS r,
                       'riders:' || lpad(o.rider_id::text, 3, '0') AS d
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
            SELECT p.tx, p.idx, s.id, d.id, 'USD/2', p.amount, now()
            FROM p JOIN ledger_account s ON s.address = p.src
                   JOIN ledger_account d ON d.address = p.dst
            """,
            [lo, hi],
        )
    return ids


@benchmark("invoicing")
def bench_invoicing(quick: bool) -> dict[str, Any]:
    if connection.vendor != "postgresql":
        return {"skipped": "PostgreSQL only"}
    n = 5_000 if quick else 100_000
    m = 1_000 if quick else 8_000
    tag = uuid.uuid4().hex[:8]
    restaurants = Restaurant.objects.bulk_create(
        [Restaurant(name=f"bench {tag} {i}") for i in range(RESTAURANTS)]
    )
    riders = Rider.objects.bulk_create([Rider(name=f"bench {tag} {i}") for i in range(RIDERS)])
    for i, r in enumerate(restaurants):
        profile_set(restaurant_id=r.pk, model="ABC"[i % 3], food_tax_bps=1000)
    r_ids, d_ids = [r.pk for r in restaurants], [d.pk for d in riders]
    started = time.perf_counter()
    ids = _orders(n, r_ids, d_ids, tag)
    setup_s = time.perf_counter() - started

    before = Invoice.objects.count()
    started = time.perf_counter()
    result = invoices_issue(ids)
    issue_s = time.perf_counter() - started
    started = time.perf_counter()
    period = invoices_issue_period(period=f"{timezone.now():%Y-%m}")
    month_end_s = time.perf_counter() - started

    more = _orders(m, r_ids, d_ids, tag + "c")
    errors: list[str] = []
    count_before = Invoice.objects.count()

    def worker(part: list[int]) -> None:
        try:
            invoices_issue(part)
        except Exception as exc:  # reported in the figures
            errors.append(repr(exc))
        finally:
            connections.close_all()

    threads = [threading.Thread(target=worker, args=(more[k::4],)) for k in range(4)]
    started = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    concurrent_s = time.perf_counter() - started
    concurrent_docs = Invoice.objects.count() - count_before
    return {
        "orders": n,
        "documents": result.count,
        "documents_in_db": Invoice.objects.count() - before - concurrent_docs,
        "setup_s": round(setup_s, 1),
        "issue_s": round(issue_s, 2),
        "goal_s": 60,
        "orders_per_s": round(n / issue_s, 1),
        "month_end_documents": period.count,
        "month_end_s": round(month_end_s, 2),
        "concurrent_workers": 4,
        "concurrent_orders": m,
        "concurrent_documents_per_s": round(concurrent_docs / concurrent_s, 1),
        "concurrent_errors": len(errors),
        "anomalies": len(result.anomalies),
    }
