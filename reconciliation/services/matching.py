"""The set-based matcher: imported balance transactions against the ledger, in SQL.

One database transaction, a handful of statements, no rows through Python:

1. `recon_s`: the Stripe side. Every source object with a balance transaction created in the
   window, aggregated per (source, asset) over ALL its imported balance transactions (a
   dispute's reinstatement days later joins its withdrawal). For Stripe's own fees
   (`reporting_category = 'fee'`, e.g. a standalone `stripe_fee`) the whole amount is the fee:
   the ledger books them `platform:stripe_fees -> stripe:balance` like any other fee.
2. `recon_wl`: ledger transactions moving `stripe:balance` in [start - grace, end), with the
   Stripe object they name (a revert inherits the object of the transaction it reverts).
3. `recon_objs`: the objects in scope, from both sides.
4. `recon_lt`: every ledger transaction naming an object in scope (through the expression
   index on `metadata->>'stripe_object'` on PostgreSQL), the reverts of those, and the
   window's movements that name no object at all.
5. `recon_l`: the ledger side per (object, asset): net movement on `stripe:balance`, the fee
   booked from `platform:stripe_fees`, transaction ids. `recon_d`: duplicate links (several
   primary ledger transactions carrying the same `stripe_balance_transaction`).
6. `INSERT INTO reconciliation_item ... SELECT` over `recon_s FULL OUTER JOIN recon_l`,
   classified by `reconciliation.matching.CLASSIFY_SQL`, with a generic suggested action.

The same SQL runs on PostgreSQL and SQLite (3.39+: FULL OUTER JOIN, `->>`); only the string
aggregate differs. Scope rules: a source with balance transactions belongs to the runs whose
window holds one of them; a ledger-only object to the runs whose window (extended back by the
grace period) holds its movement, unless it has balance transactions in another window.
"""

from __future__ import annotations

import time
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.db import connection, transaction
from django.utils import timezone

from ledger.models import Account, Posting
from ledger.models import Transaction as LedgerTransaction
from reconciliation import conf
from reconciliation.matching import (
    CLASSIFY_SQL,
    FLOW_FEE,
    FLOW_REVERT,
    KNOWN_CATEGORIES,
    META_FLOW,
    META_OBJECT,
    META_TXN,
    PROBLEMS,
    SOURCE_LABELS,
    STRIPE_BALANCE,
    STRIPE_FEES,
    Outcome,
)
from reconciliation.models import ReconciliationItem, ReconciliationRun, StripeBalanceTransaction

TEMP_TABLES = ("recon_s", "recon_wl", "recon_objs", "recon_lt", "recon_l", "recon_d")


@dataclass(frozen=True)
class MatchResult:
    items: int
    counts: dict[str, int]
    amounts: dict[str, dict[str, dict[str, int]]]
    seconds: float

    @property
    def problems(self) -> int:
        return sum(n for outcome, n in self.counts.items() if outcome in PROBLEMS)


def _agg(expr: str, *, distinct: bool = False) -> str:
    """Comma-joined values of `expr` (sorted on PostgreSQL)."""
    if connection.vendor == "postgresql":
        d = "DISTINCT " if distinct else ""
        return f"string_agg({d}{expr}, ',' ORDER BY {expr})"
    return f"group_concat(DISTINCT {expr})" if distinct else f"group_concat({expr}, ',')"


def _quote(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def _text(expr: str) -> str:
    return f"CAST({expr} AS TEXT)"


def _json(column: str, key: str) -> str:
    return f"({column} ->> '{key}')"


def _account_id(address: str) -> int:
    found = Account.objects.filter(address=address).values_list("id", flat=True).first()
    return int(found) if found is not None else -1  # no account: nothing can match it


def _dt(value: datetime) -> Any:
    return connection.ops.adapt_datetimefield_value(value)


def _statements(
    *, run_id: int, sb: int, fees: int, grace: timedelta
) -> list[tuple[str, list[Any] | None]]:
    bt = StripeBalanceTransaction._meta.db_table
    lt_table = LedgerTransaction._meta.db_table
    posting = Posting._meta.db_table
    item = ReconciliationItem._meta.db_table
    known = ", ".join(_quote(c) for c in sorted(KNOWN_CATEGORIES))
    obj = _json("t.metadata", META_OBJECT)
    labels = " ".join(
        f"WHEN {_quote(kind)} THEN {_quote(label)}" for kind, label in SOURCE_LABELS.items()
    )
    del grace  # the cut-offs are parameters (see match_run)
    sql: list[tuple[str, list[Any] | None]] = []

    sql.append(
        (
            f"""CREATE TEMP TABLE recon_s AS
SELECT b.source_key AS obj, b.asset AS asset,
    CAST(SUM(b.amount) AS BIGINT) AS s_amount,
    CAST(SUM(CASE WHEN b.reporting_category = 'fee' THEN b.fee - b.amount ELSE b.fee END)
         AS BIGINT) AS s_fee,
    CAST(SUM(b.net) AS BIGINT) AS s_net,
    COUNT(*) AS s_count,
    MIN(b.created) AS s_first,
    MAX(CASE WHEN b.reporting_category IN ({known}) THEN 0 ELSE 1 END) AS s_unknown,
    MAX(b.source_type) AS s_type,
    {_agg("b.reporting_category", distinct=True)} AS s_categories,
    {_agg("b.id")} AS s_txns
FROM {bt} b
WHERE b.source_key IN (SELECT w.source_key FROM {bt} w WHERE w.created >= %s AND w.created < %s)
GROUP BY b.source_key, b.asset""",
            ["start", "end"],
        )
    )
    sql.append(
        (
            f"""CREATE TEMP TABLE recon_wl AS
SELECT t.id AS tx_id, t.timestamp AS ts,
    COALESCE({obj}, {_json("o.metadata", META_OBJECT)}) AS obj
FROM {lt_table} t LEFT JOIN {lt_table} o ON o.id = t.reverts_id
WHERE t.timestamp >= %s AND t.timestamp < %s
  AND EXISTS (SELECT 1 FROM {posting} p WHERE p.transaction_id = t.id
              AND (p.source_id = {sb} OR p.destination_id = {sb}))""",
            ["lookback", "end"],
        )
    )
    sql.append(
        (
            "CREATE TEMP TABLE recon_objs AS SELECT obj FROM recon_s "
            "UNION SELECT obj FROM recon_wl WHERE obj IS NOT NULL",
            None,
        )
    )
    if connection.vendor == "postgresql":
        # Temp tables are never auto-analyzed: give the planner real row counts.
        sql.append(("ANALYZE recon_s", None))
        sql.append(("ANALYZE recon_objs", None))
    sql.append(
        (
            f"""CREATE TEMP TABLE recon_lt AS
SELECT t.id AS tx_id, {obj} AS obj, {_json("t.metadata", META_TXN)} AS txn,
    {_json("t.metadata", META_FLOW)} AS flow, t.reverts_id AS reverts_id, t.timestamp AS ts
FROM {lt_table} t
WHERE {obj} IN (SELECT obj FROM recon_objs)
UNION ALL
SELECT r.id, {_json("o.metadata", META_OBJECT)}, {_json("r.metadata", META_TXN)},
    {_json("r.metadata", META_FLOW)}, r.reverts_id, r.timestamp
FROM {lt_table} r JOIN {lt_table} o ON o.id = r.reverts_id
WHERE r.reverts_id IS NOT NULL AND {_json("r.metadata", META_OBJECT)} IS NULL
  AND {_json("o.metadata", META_OBJECT)} IN (SELECT obj FROM recon_objs)
UNION ALL
SELECT w.tx_id, NULL, NULL, NULL, NULL, w.ts FROM recon_wl w
WHERE w.obj IS NULL AND w.ts >= %s""",
            ["start"],
        )
    )
    if connection.vendor == "postgresql":
        sql.append(("ANALYZE recon_lt", None))
    sql.append(
        (
            f"""CREATE TEMP TABLE recon_l AS
SELECT COALESCE(lt.obj, '#' || {_text("lt.tx_id")}) AS k, lt.obj AS obj, p.asset AS asset,
    CAST(SUM(CASE WHEN p.source_id = {sb} THEN p.amount ELSE 0 END)
         - SUM(CASE WHEN p.destination_id = {sb} THEN p.amount ELSE 0 END) AS BIGINT) AS l_net,
    CAST(SUM(CASE WHEN p.source_id = {fees} AND p.destination_id = {sb} THEN p.amount
                  WHEN p.source_id = {sb} AND p.destination_id = {fees} THEN -p.amount
                  ELSE 0 END) AS BIGINT) AS l_fee,
    COUNT(DISTINCT lt.tx_id) AS l_count,
    MIN(lt.ts) AS l_first,
    MAX(lt.ts) AS l_last,
    {_agg(_text("lt.tx_id"), distinct=True)} AS l_txs
FROM recon_lt lt JOIN {posting} p ON p.transaction_id = lt.tx_id
WHERE p.source_id = {sb} OR p.destination_id = {sb}
GROUP BY COALESCE(lt.obj, '#' || {_text("lt.tx_id")}), lt.obj, p.asset""",
            None,
        )
    )
    sql.append(
        (
            f"""CREATE TEMP TABLE recon_d AS
SELECT x.obj AS obj, MAX(x.n) AS l_dup FROM (
    SELECT lt.obj AS obj, lt.txn AS txn, COUNT(DISTINCT lt.tx_id) AS n FROM recon_lt lt
    WHERE lt.obj IS NOT NULL AND lt.txn IS NOT NULL AND lt.reverts_id IS NULL
      AND COALESCE(lt.flow, '') NOT IN ({_quote(FLOW_FEE)}, {_quote(FLOW_REVERT)})
      AND NOT EXISTS (SELECT 1 FROM {lt_table} r WHERE r.reverts_id = lt.tx_id)
    GROUP BY lt.obj, lt.txn
) x GROUP BY x.obj""",
            None,
        )
    )
    figures = f"""SELECT COALESCE(s.obj, l.k) AS k, COALESCE(s.obj, l.obj) AS obj,
    COALESCE(s.asset, l.asset) AS asset,
    CASE WHEN s.obj IS NULL THEN 0 ELSE 1 END AS has_s,
    CASE WHEN l.k IS NULL THEN 0 ELSE 1 END AS has_l,
    COALESCE(s.s_unknown, 0) AS s_unknown,
    CASE WHEN COALESCE(s.obj, l.obj) IS NULL THEN 0 ELSE 1 END AS linked,
    CASE WHEN l.l_last < %s THEN 1 ELSE 0 END AS l_stale,
    COALESCE(s.s_amount, 0) AS s_amount, COALESCE(s.s_fee, 0) AS s_fee,
    COALESCE(s.s_net, 0) AS s_net, COALESCE(l.l_net, 0) AS l_net,
    COALESCE(l.l_fee, 0) AS l_fee, COALESCE(d.l_dup, 0) AS l_dup,
    COALESCE(s.s_count, 0) AS s_count, COALESCE(l.l_count, 0) AS l_count,
    COALESCE(s.s_type, '') AS s_type, COALESCE(s.s_categories, '') AS s_categories,
    COALESCE(s.s_txns, '') AS s_txns, COALESCE(l.l_txs, '') AS l_txs,
    COALESCE(s.s_first, l.l_first) AS first_at
FROM recon_s s FULL OUTER JOIN recon_l l ON l.k = s.obj AND l.asset = s.asset
LEFT JOIN recon_d d ON d.obj = COALESCE(s.obj, l.obj)
WHERE s.obj IS NOT NULL
   OR (NOT (l.l_net = 0 AND l.l_fee = 0)
       AND (l.obj IS NULL
            OR l.obj IN (SELECT obj FROM recon_s)
            OR NOT EXISTS (SELECT 1 FROM {bt} b WHERE b.source_key = l.obj AND b.asset = l.asset)))"""
    money = "y.asset || ' ' || "
    suggestion = f"""CASE y.outcome
    WHEN '{Outcome.MATCHED}' THEN ''
    WHEN '{Outcome.AWAITING_STRIPE}' THEN 'no Stripe balance transaction yet for ' || y.k
        || ' (ledger transaction(s) ' || y.l_txs || '): within the grace period, nothing to do yet'
    WHEN '{Outcome.MISSING_AT_STRIPE}' THEN 'ledger transaction(s) ' || y.l_txs || ' move '
        || {money}{_text("y.l_net")} || ' into stripe:balance for ' || y.k
        || ' but Stripe has no balance transaction for it: check ' || y.k
        || ' at Stripe; if it never happened there, revert the ledger transaction(s)'
    WHEN '{Outcome.SUSPENSE}' THEN CASE WHEN y.linked = 0
        THEN 'ledger transaction(s) ' || y.l_txs || ' move ' || {money}{_text("y.l_net")}
            || ' on stripe:balance without naming a Stripe object: revert and re-post with '
            || 'metadata stripe_object'
        ELSE 'unknown reporting_category (' || y.s_categories || ') for ' || y.k || ' ('
            || y.s_txns || '): decide how to book it and add it to '
            || 'reconciliation.matching.KNOWN_CATEGORIES; parked in suspense' END
    WHEN '{Outcome.MISSING_IN_LEDGER}' THEN CASE y.s_type {labels} ELSE 'object' END
        || ' ' || y.k || ' (' || y.s_txns || ', net ' || {money}{_text("y.s_net")}
        || ') is not in the ledger: its webhook was never processed; replay the event '
        || '(manage.py stripe_events replay EVT) or fetch missed events '
        || '(manage.py stripe_events sync --since DATE)'
    WHEN '{Outcome.MATCHED_TWICE}' THEN 'the ledger books ' || y.k || ' more than once (ledger '
        || {money}{_text("y.l_net")} || ', Stripe ' || {_text("y.s_net")}
        || ', ledger transactions ' || y.l_txs
        || '): revert the duplicate(s) with ledger.services.transaction_revert'
    WHEN '{Outcome.FEE_MISSING}' THEN 'Stripe fee ' || {money}{_text("y.s_fee - y.l_fee")}
        || ' of ' || y.k || ' is not booked: book it platform:stripe_fees -> stripe:balance'
    ELSE 'the ledger moves ' || {money}{_text("y.l_net")} || ' (fee ' || {_text("y.l_fee")}
        || ') for ' || y.k || ' in transaction(s) ' || y.l_txs || ', Stripe '
        || {_text("y.s_net")} || ' (fee ' || {_text("y.s_fee")} || ') in ' || y.s_txns
        || ': find the difference of ' || {_text("y.l_net - y.s_net")}
        || ' and post a correcting transaction'
END"""
    # This statement has parameters: a literal % (CLASSIFY_SQL's modulo) must be doubled.
    classify = CLASSIFY_SQL.replace("%", "%%")
    key = connection.ops.quote_name("key")
    sql.append(
        (
            f"""INSERT INTO {item} (run_id, {key}, stripe_object, asset, outcome, source_type,
    categories, stripe_amount, stripe_fee, stripe_net, ledger_net, ledger_fee, difference,
    balance_transaction_count, ledger_transaction_count, balance_transactions,
    ledger_transactions, occurred_at, suggested_action, repair, safe, repair_status,
    repair_note, previous_outcome)
SELECT {run_id}, y.k, y.obj, y.asset, y.outcome, y.s_type, y.s_categories, y.s_amount,
    y.s_fee, y.s_net, y.l_net, y.l_fee, y.l_net - y.s_net, y.s_count, y.l_count, y.s_txns,
    y.l_txs, y.first_at, {suggestion}, NULL, {_false()}, 'none', '', NULL
FROM (SELECT x.*, {classify} AS outcome FROM ({figures}) x) y""",
            ["cutoff"],
        )
    )
    return sql


def _false() -> str:
    return "false" if connection.vendor == "postgresql" else "0"


def _drop_temp_tables(cursor: Any) -> None:
    for name in TEMP_TABLES:
        cursor.execute(f"DROP TABLE IF EXISTS {name}")


def match_run(*, run: ReconciliationRun, now: datetime | None = None) -> MatchResult:
    """Classify the run's window into items (replacing none: the run must have no items yet).

    The outermost caller owns no transaction here: this is one durable transaction, so a
    failure leaves the run without items."""
    started = time.perf_counter()
    now = now or timezone.now()
    grace = timedelta(seconds=run.grace_seconds)
    values = {
        "start": _dt(run.window_start),
        "end": _dt(run.window_end),
        "lookback": _dt(run.window_start - grace),
        "cutoff": _dt(now - grace),
    }
    sb = _account_id(STRIPE_BALANCE)
    fees = _account_id(STRIPE_FEES)
    with transaction.atomic(durable=True), connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute(
                "SELECT set_config('work_mem', %s, true)", [conf.get("RECONCILIATION_WORK_MEM")]
            )
        _drop_temp_tables(cursor)
        for statement, names in _statements(run_id=run.pk, sb=sb, fees=fees, grace=grace):
            cursor.execute(statement, [values[n] for n in names] if names else None)
        _drop_temp_tables(cursor)
        counts, amounts = _aggregate(cursor, run.pk)
    return MatchResult(
        items=sum(counts.values()),
        counts=counts,
        amounts=amounts,
        seconds=time.perf_counter() - started,
    )


Amounts = dict[str, dict[str, dict[str, int]]]


def _aggregate(cursor: Any, run_id: int) -> tuple[dict[str, int], Amounts]:
    item = ReconciliationItem._meta.db_table
    cursor.execute(
        f"SELECT outcome, asset, COUNT(*), SUM(stripe_net), SUM(ledger_net), SUM(difference) "
        f"FROM {item} WHERE run_id = %s GROUP BY outcome, asset ORDER BY outcome, asset",
        [run_id],
    )
    counts: dict[str, int] = defaultdict(int)
    amounts: dict[str, dict[str, dict[str, int]]] = defaultdict(dict)
    for outcome, asset, n, s_net, l_net, diff in cursor.fetchall():
        counts[outcome] += int(n)
        amounts[outcome][asset] = {
            "items": int(n),
            "stripe_net": int(s_net or 0),
            "ledger_net": int(l_net or 0),
            "difference": int(diff or 0),
        }
    return dict(counts), dict(amounts)


def run_aggregates(*, run: ReconciliationRun) -> tuple[dict[str, int], dict[str, Any]]:
    """Counts and amounts per outcome of a run's items, as stored now."""
    with connection.cursor() as cursor:
        return _aggregate(cursor, run.pk)
