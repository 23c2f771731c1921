"""The set-based matcher: imported balance transactions against the ledger, in SQL.

One durable database transaction, a dozen statements, no rows through Python (temporary
tables, dropped at the end; each is ANALYZEd on PostgreSQL so the next statement plans on
real row counts):

1. `recon_sk`, `recon_s`: the Stripe side per (source, asset). Sources with one balance
   transaction (nearly all) are copied as they are; the few with several (a dispute's
   withdrawal and reinstatement, a payout and its failure, possibly in other windows) are
   summed over ALL their imported balance transactions. For Stripe's own fees
   (`reporting_category = 'fee'`, e.g. a standalone `stripe_fee`) the whole amount is the fee:
   the ledger books them `platform:stripe_fees -> stripe:balance` like any other fee.
2. `recon_wx`, `recon_wl`: ledger transactions of [start - grace, end) whose Stripe object
   has no balance transaction at all (or that name none), and that move `stripe:balance`: the
   ledger-only side. A revert inherits the object of the transaction it reverts.
3. `recon_lt`: every ledger transaction naming an object in scope (found through the
   expression index on `metadata->>'stripe_object'` on PostgreSQL), the reverts of those, and
   the window's movements that name no object (keyed `#<ledger transaction id>`).
4. `recon_lp`, `recon_lk`, `recon_l`: per ledger transaction and asset, its movement on
   `stripe:balance` (Stripe's sign) and the fee it booked from `platform:stripe_fees`; then
   per key, aggregating only keys with several transactions. `recon_d`: duplicate links
   (several primary ledger transactions carrying one `stripe_balance_transaction`).
5. `INSERT INTO reconciliation_item ... SELECT` over `recon_s FULL OUTER JOIN recon_l`,
   classified by `reconciliation.matching.CLASSIFY_SQL`, with a generic suggested action.

Aggregates are plain SUM/MIN/MAX/COUNT (no ORDER BY or DISTINCT inside one) so that PostgreSQL
hashes instead of sorting; id lists are in no particular order. The same SQL runs on SQLite
(3.39+: FULL OUTER JOIN, `->>`), where only the string aggregate is spelled differently.

Scope: a source with balance transactions belongs to the runs whose window holds one of them;
a ledger-only object to the runs whose window (extended back by the grace period) holds its
movement; a movement naming no object to the run whose window holds it.
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

TEMP_TABLES = (
    "recon_sk",
    "recon_s",
    "recon_wx",
    "recon_wl",
    "recon_lt",
    "recon_lp",
    "recon_lk",
    "recon_l",
    "recon_d",
)


@dataclass(frozen=True)
class MatchResult:
    items: int
    counts: dict[str, int]
    amounts: dict[str, dict[str, dict[str, int]]]
    seconds: float

    @property
    def problems(self) -> int:
        return sum(n for outcome, n in self.counts.items() if outcome in PROBLEMS)


def _agg(expr: str) -> str:
    """Comma-joined values of `expr`, in no particular order (an ordered or DISTINCT aggregate
    would force PostgreSQL to sort instead of hashing)."""
    if connection.vendor == "postgresql":
        return f"string_agg({expr}, ',')"
    return f"group_concat({expr}, ',')"


def _quote(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def _text(expr: str) -> str:
    return f"CAST({expr} AS TEXT)"


def _json(column: str, key: str) -> str:
    return f"({column} ->> '{key}')"


def ledger_account_id(address: str) -> int:
    found = Account.objects.filter(address=address).values_list("id", flat=True).first()
    return int(found) if found is not None else -1  # no account: nothing can match it


def _dt(value: datetime) -> Any:
    return connection.ops.adapt_datetimefield_value(value)


def _statements(*, run_id: int, sb: int, fees: int) -> list[tuple[str, list[str] | None]]:
    """The matcher's statements, with the names of their parameters (see match_run).

    Every aggregate is hash-friendly (no ORDER BY or DISTINCT inside an aggregate): at a million
    keys, sort-based grouping is what would cost the most."""
    bt = StripeBalanceTransaction._meta.db_table
    lt_table = LedgerTransaction._meta.db_table
    posting = Posting._meta.db_table
    known = ", ".join(_quote(c) for c in sorted(KNOWN_CATEGORIES))
    obj = _json("t.metadata", META_OBJECT)
    # A revert that names no object inherits its original's (looked up only for reverts).
    inherited = (
        f"COALESCE({obj}, CASE WHEN t.reverts_id IS NOT NULL THEN (SELECT "
        f"{_json('o.metadata', META_OBJECT)} FROM {lt_table} o WHERE o.id = t.reverts_id) END)"
    )
    analyze = connection.vendor == "postgresql"  # temp tables are never auto-analyzed
    sql: list[tuple[str, list[str] | None]] = []

    def add(statement: str, params: list[str] | None = None, table: str | None = None) -> None:
        sql.append((statement, params))
        if analyze and table:
            sql.append((f"ANALYZE {table}", None))

    # Stripe side, per (source, asset). Most sources have exactly one balance transaction:
    # those are copied as they are; only the few with several (a dispute's withdrawal and
    # reinstatement, a payout and its failure, possibly days apart and outside the window) are
    # aggregated, over all their imported balance transactions. A million single rows never
    # go through an aggregate.
    fee_expr = "CASE WHEN {b}.reporting_category = 'fee' THEN {b}.fee - {b}.amount ELSE {b}.fee END"
    unknown_expr = f"CASE WHEN {{b}}.reporting_category IN ({known}) THEN 0 ELSE 1 END"
    add(
        f"""CREATE TEMP TABLE recon_sk AS
SELECT w.source_key AS obj FROM {bt} w WHERE w.created >= %s AND w.created < %s
GROUP BY w.source_key HAVING COUNT(*) > 1
UNION
SELECT w.source_key FROM {bt} w WHERE w.created >= %s AND w.created < %s
  AND EXISTS (SELECT 1 FROM {bt} o WHERE o.source_key = w.source_key
              AND (o.created < %s OR o.created >= %s))""",
        ["start", "end", "start", "end", "start", "end"],
        "recon_sk",
    )
    add(
        f"""CREATE TEMP TABLE recon_s AS
SELECT b.source_key AS obj, b.asset AS asset, b.amount AS s_amount,
    {fee_expr.format(b="b")} AS s_fee, b.net AS s_net, 1 AS s_count, b.created AS s_first,
    {unknown_expr.format(b="b")} AS s_unknown, b.source_type AS s_type,
    b.reporting_category AS s_categories, b.id AS s_txns
FROM {bt} b
WHERE b.created >= %s AND b.created < %s
  AND NOT EXISTS (SELECT 1 FROM recon_sk k WHERE k.obj = b.source_key)
UNION ALL
SELECT b.source_key, b.asset, CAST(SUM(b.amount) AS BIGINT),
    CAST(SUM({fee_expr.format(b="b")}) AS BIGINT), CAST(SUM(b.net) AS BIGINT), COUNT(*),
    MIN(b.created), MAX({unknown_expr.format(b="b")}), MAX(b.source_type),
    {_agg("b.reporting_category")}, {_agg("b.id")}
FROM {bt} b
WHERE b.source_key IN (SELECT k.obj FROM recon_sk k)
GROUP BY b.source_key, b.asset""",
        ["start", "end"],
        "recon_s",
    )
    # Ledger movements on stripe:balance in [start - grace, end) whose object has no balance
    # transaction at all (or that name no object): the ledger-only side of the window. In two
    # steps, so that the planner knows how few rows the posting check is left with.
    add(
        f"""CREATE TEMP TABLE recon_wx AS
SELECT x.tx_id, x.ts, x.obj FROM (
    SELECT t.id AS tx_id, t.timestamp AS ts, {inherited} AS obj
    FROM {lt_table} t WHERE t.timestamp >= %s AND t.timestamp < %s
) x
WHERE NOT EXISTS (SELECT 1 FROM {bt} b WHERE b.source_key = x.obj)""",
        ["lookback", "end"],
        "recon_wx",
    )
    add(
        f"""CREATE TEMP TABLE recon_wl AS
SELECT x.tx_id, x.ts, x.obj FROM recon_wx x
WHERE EXISTS (SELECT 1 FROM {posting} p WHERE p.transaction_id = x.tx_id
              AND (p.source_id = {sb} OR p.destination_id = {sb}))""",
        None,
        "recon_wl",
    )
    # Every ledger transaction naming an object in scope, the reverts of those, and the
    # window's movements naming none. The branches are disjoint.
    add(
        f"""CREATE TEMP TABLE recon_lt AS
SELECT t.id AS tx_id, {obj} AS k, {obj} AS obj, {_json("t.metadata", META_TXN)} AS txn,
    {_json("t.metadata", META_FLOW)} AS flow, t.reverts_id AS reverts_id, t.timestamp AS ts
FROM {lt_table} t
WHERE {obj} IN (SELECT obj FROM recon_s)
UNION ALL
SELECT t.id, {obj}, {obj}, {_json("t.metadata", META_TXN)},
    {_json("t.metadata", META_FLOW)}, t.reverts_id, t.timestamp
FROM {lt_table} t
WHERE {obj} IN (SELECT w.obj FROM recon_wl w WHERE w.obj IS NOT NULL)
UNION ALL
SELECT r.id, {_json("o.metadata", META_OBJECT)}, {_json("o.metadata", META_OBJECT)},
    {_json("r.metadata", META_TXN)},
    {_json("r.metadata", META_FLOW)}, r.reverts_id, r.timestamp
FROM {lt_table} r JOIN {lt_table} o ON o.id = r.reverts_id
WHERE r.reverts_id IS NOT NULL AND {_json("r.metadata", META_OBJECT)} IS NULL
  AND ({_json("o.metadata", META_OBJECT)} IN (SELECT obj FROM recon_s)
       OR {_json("o.metadata", META_OBJECT)} IN (SELECT w.obj FROM recon_wl w WHERE w.obj IS NOT NULL))
UNION ALL
SELECT w.tx_id, '#' || {_text("w.tx_id")}, NULL, NULL, NULL, NULL, w.ts FROM recon_wl w
WHERE w.obj IS NULL AND w.ts >= %s""",
        ["start"],
        "recon_lt",
    )
    # Ledger side: first per ledger transaction and asset (its movement on stripe:balance in
    # Stripe's sign, and the fee it booked), then per key. Keys with one transaction (nearly
    # all) are copied; the few with several are aggregated.
    add(
        f"""CREATE TEMP TABLE recon_lp AS
SELECT lt.tx_id AS tx_id, lt.k AS k, lt.obj AS obj, lt.ts AS ts, p.asset AS asset,
    CAST(SUM(CASE WHEN p.source_id = p.destination_id THEN 0
                  WHEN p.source_id = {sb} THEN p.amount ELSE -p.amount END) AS BIGINT) AS net,
    CAST(SUM(CASE WHEN p.source_id = {fees} AND p.destination_id = {sb} THEN p.amount
                  WHEN p.source_id = {sb} AND p.destination_id = {fees} THEN -p.amount
                  ELSE 0 END) AS BIGINT) AS fee
FROM recon_lt lt JOIN {posting} p ON p.transaction_id = lt.tx_id
WHERE p.source_id = {sb} OR p.destination_id = {sb}
GROUP BY lt.tx_id, lt.k, lt.obj, lt.ts, p.asset""",
        None,
        "recon_lp",
    )
    add(
        """CREATE TEMP TABLE recon_lk AS
SELECT lp.k AS k FROM recon_lp lp GROUP BY lp.k HAVING COUNT(*) > 1""",
        None,
        "recon_lk",
    )
    add(
        f"""CREATE TEMP TABLE recon_l AS
SELECT lp.k AS k, lp.obj AS obj, lp.asset AS asset, lp.net AS l_net, lp.fee AS l_fee,
    1 AS l_count, lp.ts AS l_first, lp.ts AS l_last, {_text("lp.tx_id")} AS l_txs
FROM recon_lp lp
WHERE NOT EXISTS (SELECT 1 FROM recon_lk m WHERE m.k = lp.k)
UNION ALL
SELECT lp.k, lp.obj, lp.asset, CAST(SUM(lp.net) AS BIGINT), CAST(SUM(lp.fee) AS BIGINT),
    COUNT(*), MIN(lp.ts), MAX(lp.ts), {_agg(_text("lp.tx_id"))}
FROM recon_lp lp
WHERE lp.k IN (SELECT m.k FROM recon_lk m)
GROUP BY lp.k, lp.obj, lp.asset""",
        None,
        "recon_l",
    )
    # Duplicate links, only where a key has several ledger transactions.
    add(
        f"""CREATE TEMP TABLE recon_d AS
SELECT x.obj AS obj, MAX(x.n) AS l_dup FROM (
    SELECT lt.obj AS obj, lt.txn AS txn, COUNT(*) AS n FROM recon_lt lt
    WHERE lt.obj IN (SELECT m.k FROM recon_lk m)
      AND lt.txn IS NOT NULL AND lt.reverts_id IS NULL
      AND COALESCE(lt.flow, '') NOT IN ({_quote(FLOW_FEE)}, {_quote(FLOW_REVERT)})
      AND NOT EXISTS (SELECT 1 FROM {lt_table} r WHERE r.reverts_id = lt.tx_id)
    GROUP BY lt.obj, lt.txn
) x GROUP BY x.obj""",
        None,
        "recon_d",
    )
    item = ReconciliationItem._meta.db_table
    labels = " ".join(
        f"WHEN {_quote(kind)} THEN {_quote(label)}" for kind, label in SOURCE_LABELS.items()
    )
    figures = """SELECT COALESCE(s.obj, l.k) AS k, COALESCE(s.obj, l.obj) AS obj,
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
WHERE s.obj IS NOT NULL OR l.l_net <> 0 OR l.l_fee <> 0"""
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
    sb = ledger_account_id(STRIPE_BALANCE)
    fees = ledger_account_id(STRIPE_FEES)
    with transaction.atomic(durable=True), connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute(
                "SELECT set_config('work_mem', %s, true)", [conf.get("RECONCILIATION_WORK_MEM")]
            )
            # A few big set operations: JIT compilation costs seconds and saves little here.
            cursor.execute("SELECT set_config('jit', 'off', true)")
        _drop_temp_tables(cursor)
        for statement, names in _statements(run_id=run.pk, sb=sb, fees=fees):
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
