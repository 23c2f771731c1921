"""Reading the ledger: balances (current, past, by pattern), volumes, accounts, transactions,
the balance sheet. Reads take no locks.

A current balance is the sum of at most LEDGER_BALANCE_SHARDS rows, whatever the history
length. A balance at a past instant (one account, a pattern, the balance sheet) is the nearest
balance checkpoint plus bounded ranges of postings (ledger/services/checkpoints.py); so is the
balance sheet now (the latest run plus what it does not cover, see _balances_at); volumes
over a period are sums over the postings, through the (account, asset, timestamp) indexes.
`at` is inclusive, a period is [start, end).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from django.db import connection
from django.db.models import Exists, OuterRef, Prefetch, Q, QuerySet
from django.db.models.fields.json import KeyTransform

from ledger import conf
from ledger.domain import (
    DEBIT_NORMAL,
    MAX_AMOUNT,
    Chart,
    Volumes,
    format_amount,
    pattern_prefix,
    pattern_regex,
    validate_address,
    validate_asset,
    validate_pattern,
    validate_timestamp,
)
from ledger.errors import AccountNotFound, TransactionNotFound
from ledger.models import Account, AccountMetadataChange, Posting, Transaction

# --- balances and volumes ------------------------------------------------------------------


def balance_get(*, address: str, asset: str, at: datetime | None = None) -> int:
    """The balance of (address, asset), now or at instant `at` (inclusive). 0 if unknown.

    At `at`: from the balance checkpoint run nearest to `at` (ledger/services/checkpoints.py):
    its row, plus (or minus, for a run after `at`) the postings between the run and `at`,
    plus the postings of transactions the run does not cover that are dated at or before the
    run; the plain sum of every posting up to `at` when there is no run."""
    at = validate_timestamp(at)
    if at is None:
        return volumes_get(address=address, asset=asset).balance
    validate_address(address)
    validate_asset(asset)
    with connection.cursor() as cursor:
        for _ in range(_RUN_ATTEMPTS):
            run = _run_nearest(cursor, at)
            if run is None:
                return volumes_get(address=address, asset=asset, end=at, end_inclusive=True).balance
            lo, hi, sign = (run.at, at, 1) if run.at <= at else (at, run.at, -1)
            cursor.execute(
                "WITH a AS (SELECT id FROM ledger_account WHERE address = %s), "
                f"{_LATE_CTE} SELECT "
                "(SELECT count(*) FROM ledger_checkpointrun WHERE id = %s), "
                "(SELECT coalesce(sum(c.balance), 0) FROM ledger_checkpoint c, a"
                " WHERE c.run_id = %s AND c.account_id = a.id AND c.asset = %s)"
                " + (SELECT coalesce(sum(CASE WHEN q.destination_id = a.id THEN q.amount ELSE 0 END)"
                "   - sum(CASE WHEN q.source_id = a.id THEN q.amount ELSE 0 END), 0)"
                "  FROM late q, a WHERE q.asset = %s"
                "  AND (q.source_id = a.id OR q.destination_id = a.id)), "
                "(SELECT coalesce(sum(p.amount), 0) FROM ledger_posting p, a"
                " WHERE p.destination_id = a.id AND p.asset = %s"
                " AND p.timestamp > %s AND p.timestamp <= %s)"
                " - (SELECT coalesce(sum(p.amount), 0) FROM ledger_posting p, a"
                " WHERE p.source_id = a.id AND p.asset = %s"
                " AND p.timestamp > %s AND p.timestamp <= %s)",
                [
                    address,
                    *_late_params(run),
                    run.id,
                    run.id,
                    asset,
                    asset,
                    asset,
                    lo,
                    hi,
                    asset,
                    lo,
                    hi,
                ],
            )
            exists, at_run, between = cursor.fetchone()
            if exists:
                return int(at_run) + sign * int(between)
        # pruned under us every time (only runs older than LEDGER_CHECKPOINT_KEEP_HOURS are)
        return volumes_get(address=address, asset=asset, end=at, end_inclusive=True).balance


@dataclass(frozen=True, slots=True)
class _Run:
    id: int
    at: datetime
    covers_tx_id: int


_RUN_ATTEMPTS = 3


def _run_nearest(cursor: Any, at: datetime) -> _Run | None:
    """The checkpoint run nearest to `at` (before or after it), or None if there is none."""
    cursor.execute(
        "SELECT * FROM (SELECT id, at, covers_tx_id FROM ledger_checkpointrun WHERE at <= %s"
        " ORDER BY at DESC LIMIT 1) b UNION ALL "
        "SELECT * FROM (SELECT id, at, covers_tx_id FROM ledger_checkpointrun WHERE at > %s"
        " ORDER BY at LIMIT 1) n",
        [at, at],
    )
    runs = [_Run(int(i), _aware(t), int(w)) for i, t, w in cursor.fetchall()]
    if not runs:
        return None
    return min(runs, key=lambda r: abs((r.at - at).total_seconds()))


def _aware(value: Any) -> datetime:
    if isinstance(value, str):  # SQLite without converters
        value = datetime.fromisoformat(value)
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


# The postings the run does not cover and that are dated at or before it. The run's W only
# rises, and is read again in this statement (the rows are folded together with it, so they
# agree); the W read before is a literal lower bound that lets the planner take the primary
# key's range (the writes since the run's last fold).
_LATE_CTE = (
    "late AS MATERIALIZED (SELECT source_id, destination_id, asset, amount FROM ledger_posting"
    " WHERE transaction_id > %s"
    " AND transaction_id > (SELECT covers_tx_id FROM ledger_checkpointrun WHERE id = %s)"
    " AND timestamp <= %s)"
)


def _late_params(run: _Run) -> list[Any]:
    return [run.covers_tx_id, run.id, run.at]


def _run_latest(cursor: Any) -> _Run | None:
    """The latest checkpoint run (by instant), or None if there is none."""
    cursor.execute("SELECT id, at, covers_tx_id FROM ledger_checkpointrun ORDER BY at DESC LIMIT 1")
    row = cursor.fetchone()
    return None if row is None else _Run(int(row[0]), _aware(row[1]), int(row[2]))


def _balances_at(
    *, pattern: str, asset: str | None, at: datetime | None
) -> dict[tuple[str, str], int]:
    """(address, asset) -> balance at `at` of the accounts matching `pattern`, from the
    checkpoint run nearest to `at` (see balance_get); zero balances are left out.

    `at` None is now, whatever the timestamps (a transaction may be dated in the future): the
    latest run plus the postings it does not cover (`late`) plus every posting dated after it,
    with no upper bound, all in one statement, so the sum is every posting committed when the
    statement began, exactly what the balance rows hold."""
    where, params = _pattern_where(pattern, asset)
    if at is None and connection.vendor != "postgresql":
        return _balances_from_rows(pattern, asset)  # the statement below is PostgreSQL's
    with connection.cursor() as cursor:
        for _ in range(_RUN_ATTEMPTS):
            run = _run_nearest(cursor, at) if at is not None else _run_latest(cursor)
            if run is None:
                break
            if at is None:
                bounds, sign = "t.timestamp > %s", ""
                bound_params: list[Any] = [run.at]
            else:
                lo, hi, sign = (run.at, at, "") if run.at <= at else (at, run.at, "-")
                bounds, bound_params = "t.timestamp > %s AND t.timestamp <= %s", [lo, hi]
            # the range through the transactions' timestamp index (a posting's timestamp is
            # its transaction's)
            range_sql = (
                "SELECT p.{side}_id AS account_id, p.asset, {sign}p.amount AS amount "
                "FROM ledger_transaction t JOIN ledger_posting p ON p.transaction_id = t.id "
                f"WHERE {bounds}"
            )
            cursor.execute(
                f"WITH {_LATE_CTE}, x AS ("
                " SELECT account_id, asset, balance AS amount FROM ledger_checkpoint"
                " WHERE run_id = %s"
                " UNION ALL SELECT destination_id, asset, amount FROM late"
                " UNION ALL SELECT source_id, asset, -amount FROM late"
                " UNION ALL "
                + range_sql.format(side="destination", sign=sign)
                + " UNION ALL "
                + range_sql.format(side="source", sign="" if sign else "-")
                # summed per account id first: the addresses are read (and matched) only
                # for the non-zero balances
                + "), y AS (SELECT account_id, asset, sum(amount) AS balance FROM x"
                " GROUP BY account_id, asset HAVING sum(amount) <> 0)"
                " SELECT a.address, x.asset, x.balance,"
                " (SELECT count(*) FROM ledger_checkpointrun WHERE id = %s)"
                " FROM y x JOIN ledger_account a ON a.id = x.account_id WHERE "
                + " AND ".join(where),
                [*_late_params(run), run.id, *bound_params, *bound_params, run.id, *params],
            )
            rows = cursor.fetchall()
            if rows and not rows[0][3]:
                continue  # pruned under us
            if not rows:
                cursor.execute("SELECT count(*) FROM ledger_checkpointrun WHERE id = %s", [run.id])
                if not cursor.fetchone()[0]:
                    continue
            return {(address, row_asset): int(bal) for address, row_asset, bal, _ in rows if bal}
    if at is None:
        return _balances_from_rows(pattern, asset)
    return {
        key: vols.balance
        for key, vols in _volumes_by_account(pattern=pattern, asset=asset, at=at).items()
        if vols.balance
    }


def _balances_from_rows(pattern: str, asset: str | None) -> dict[tuple[str, str], int]:
    """(address, asset) -> current non-zero balance of the accounts matching `pattern`, from
    the balance rows (no checkpoint run): summed per account id first, so the addresses are
    read only for the non-zero balances (most order and payment accounts net to zero); a
    pattern other than `**` picks its accounts first (its literal prefix through the address
    index)."""
    where, params = _pattern_where(pattern, asset)
    inner = ""
    inner_params: list[Any] = []
    if pattern != "**":
        account_where, inner_params = _pattern_where(pattern, None)
        inner = (
            " WHERE account_id IN (SELECT a.id FROM ledger_account a WHERE "
            + " AND ".join(account_where)
            + ")"
        )
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT a.address, x.asset, x.balance FROM ("
            " SELECT account_id, asset, sum(input - output) AS balance FROM ledger_balance"
            + inner
            + " GROUP BY account_id, asset HAVING sum(input - output) <> 0) x"
            " JOIN ledger_account a ON a.id = x.account_id WHERE " + " AND ".join(where),
            [*inner_params, *params],
        )
        return {(address, row_asset): int(bal) for address, row_asset, bal in cursor.fetchall()}


def volumes_get(
    *,
    address: str,
    asset: str,
    start: datetime | None = None,
    end: datetime | None = None,
    end_inclusive: bool = False,
) -> Volumes:
    """Input and output volumes of (address, asset): all time from the balance rows, or over
    [start, end) from the postings."""
    validate_address(address)
    validate_asset(asset)
    start = validate_timestamp(start)
    end = validate_timestamp(end)
    with connection.cursor() as cursor:
        if start is None and end is None:
            cursor.execute(
                "SELECT coalesce(sum(b.input), 0), coalesce(sum(b.output), 0) "
                "FROM ledger_balance b WHERE b.asset = %s AND b.account_id = "
                "(SELECT id FROM ledger_account WHERE address = %s)",
                [asset, address],
            )
        else:
            clause, params = _period(start, end, end_inclusive)
            cursor.execute(
                "WITH a AS (SELECT id FROM ledger_account WHERE address = %s) SELECT "
                "(SELECT coalesce(sum(p.amount), 0) FROM ledger_posting p, a "
                f" WHERE p.destination_id = a.id AND p.asset = %s{clause}), "
                "(SELECT coalesce(sum(p.amount), 0) FROM ledger_posting p, a "
                f" WHERE p.source_id = a.id AND p.asset = %s{clause})",
                [address, asset, *params, asset, *params],
            )
        input_, output = cursor.fetchone()
    return Volumes(input=int(input_), output=int(output))


def _period(
    start: datetime | None, end: datetime | None, end_inclusive: bool
) -> tuple[str, list[Any]]:
    clause, params = "", []
    if start is not None:
        clause += " AND p.timestamp >= %s"
        params.append(start)
    if end is not None:
        clause += " AND p.timestamp <= %s" if end_inclusive else " AND p.timestamp < %s"
        params.append(end)
    return clause, params


def account_volumes_get(*, address: str, at: datetime | None = None) -> dict[str, Volumes]:
    """asset -> volumes of one account (now, or up to `at` inclusive)."""
    return {
        asset: vols
        for (addr, asset), vols in _volumes_by_account(pattern=address, at=at).items()
        if addr == address
    }


def _volumes_by_account(
    *, pattern: str, asset: str | None = None, at: datetime | None = None
) -> dict[tuple[str, str], Volumes]:
    """(address, asset) -> volumes over the accounts matching `pattern`."""
    where, params = _pattern_where(pattern, asset)
    at = validate_timestamp(at)
    if at is None:
        sql = (
            "SELECT a.address, x.asset, sum(x.input), sum(x.output) FROM ledger_balance x "
            "JOIN ledger_account a ON a.id = x.account_id WHERE "
            + " AND ".join(where)
            + " GROUP BY a.address, x.asset"
        )
        all_params = params
    else:
        sql = (
            "SELECT a.address, x.asset, sum(x.input), sum(x.output) FROM ("
            " SELECT p.destination_id AS account_id, p.asset, p.amount AS input, 0 AS output "
            " FROM ledger_posting p WHERE p.timestamp <= %s"
            " UNION ALL"
            " SELECT p.source_id, p.asset, 0, p.amount FROM ledger_posting p"
            " WHERE p.timestamp <= %s"
            ") x JOIN ledger_account a ON a.id = x.account_id WHERE "
            + " AND ".join(where)
            + " GROUP BY a.address, x.asset"
        )
        all_params = [at, at, *params]
    result: dict[tuple[str, str], Volumes] = {}
    with connection.cursor() as cursor:
        cursor.execute(sql, all_params)
        for address, row_asset, input_, output in cursor.fetchall():
            result[(address, row_asset)] = Volumes(input=int(input_), output=int(output))
    return result


def _pattern_where(pattern: str, asset: str | None) -> tuple[list[str], list[Any]]:
    """WHERE conditions on `a.address` (the pattern) and `x.asset`."""
    regex = pattern_regex(pattern)
    prefix = pattern_prefix(pattern)
    where = ["a.address ~ %s" if connection.vendor == "postgresql" else "a.address REGEXP %s"]
    params: list[Any] = [regex]
    if pattern == "**":  # every address (a CHECK constraint): no regex over every account
        where, params = ["1 = 1"], []
    if prefix:
        # a literal prefix lets the address (varchar_pattern_ops) index narrow the scan
        where.append("a.address LIKE %s ESCAPE '\\'")
        params.append(_like_escape(prefix) + ("%" if prefix.endswith(":") else ""))
    if asset is not None:
        where.append("x.asset = %s")
        params.append(validate_asset(asset))
    return where, params


def _like_escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


@dataclass(frozen=True, slots=True)
class Balances:
    """Balances of the accounts matching a pattern: per account, and summed per asset."""

    pattern: str
    accounts: dict[str, dict[str, int]]
    totals: dict[str, int]


def balances_get(
    *,
    pattern: str = "**",
    asset: str | None = None,
    at: datetime | None = None,
    nonzero: bool = False,
) -> Balances:
    """Balances of every account matching `pattern` (`*` one segment, `**` one or more; the
    default `**` is every account), per account and aggregated per asset, now or at `at`.
    Now: every (account, asset) the ledger has seen, zero balances included; with `nonzero`,
    only the non-zero ones, read like the balance sheet now (the latest checkpoint run plus
    what it does not cover: a pattern over many accounts that mostly net to zero, such as
    `orders:*`, costs the non-zero ones only). At `at`: from the balance checkpoints (see
    balance_get), and only the non-zero balances."""
    validate_pattern(pattern)
    at = validate_timestamp(at)
    accounts: dict[str, dict[str, int]] = defaultdict(dict)
    totals: dict[str, int] = defaultdict(int)
    balances = (
        {
            key: vols.balance
            for key, vols in _volumes_by_account(pattern=pattern, asset=asset).items()
        }
        if at is None and not nonzero
        else _balances_at(pattern=pattern, asset=asset, at=at)
    )
    for (address, row_asset), balance in sorted(balances.items()):
        accounts[address][row_asset] = balance
        totals[row_asset] += balance
    return Balances(pattern=pattern, accounts=dict(accounts), totals=dict(sorted(totals.items())))


# --- accounts ------------------------------------------------------------------------------


def account_get(*, address: str) -> Account:
    validate_address(address)
    account = Account.objects.filter(address=address).first()
    if account is None:
        raise AccountNotFound(f"Account {address} does not exist.", extra={"address": address})
    return account


def account_metadata_get(*, address: str) -> dict[str, str]:
    """The account's metadata ({} for an account never used)."""
    validate_address(address)
    row = Account.objects.filter(address=address).values_list("metadata", flat=True).first()
    return dict(row or {})


def account_metadata_history(*, address: str) -> QuerySet[AccountMetadataChange]:
    account = account_get(address=address)
    return AccountMetadataChange.objects.filter(account=account).order_by("id")


def accounts_list(
    *, pattern: str | None = None, metadata: Mapping[str, str] | None = None
) -> QuerySet[Account]:
    qs = Account.objects.order_by("address")
    if pattern:
        qs = qs.filter(address__regex=pattern_regex(pattern))
        prefix = pattern_prefix(pattern)
        if prefix:
            qs = qs.filter(address__startswith=prefix)
    if metadata:
        qs = _metadata_filter(qs, metadata)
    return qs


def _metadata_filter(qs: QuerySet[Any], metadata: Mapping[str, Any]) -> QuerySet[Any]:
    """Containment on the metadata: JSONB @> (GIN-indexed) on PostgreSQL, one key lookup per
    key elsewhere (SQLite has no containment operator)."""
    if connection.vendor == "postgresql":
        return qs.filter(metadata__contains=dict(metadata))
    for i, (key, value) in enumerate(sorted(metadata.items())):
        alias = f"_metadata_{i}"
        qs = qs.alias(**{alias: KeyTransform(key, "metadata")}).filter(**{alias: value})
    return qs


def account_balances_map(*, account_ids: list[int]) -> dict[int, dict[str, int]]:
    """account id -> {asset: balance} for a page of accounts (one query)."""
    result: dict[int, dict[str, int]] = defaultdict(dict)
    if not account_ids:
        return {}
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT account_id, asset, sum(input - output) FROM ledger_balance WHERE account_id "
            f"IN ({', '.join(['%s'] * len(account_ids))}) GROUP BY account_id, asset "
            "ORDER BY account_id, asset",
            account_ids,
        )
        for account_id, asset, balance in cursor.fetchall():
            result[account_id][asset] = int(balance)
    return dict(result)


# --- transactions --------------------------------------------------------------------------


def transactions_list(
    *,
    account: str | None = None,
    source: str | None = None,
    destination: str | None = None,
    reference: str | None = None,
    metadata: Mapping[str, Any] | None = None,
    start: datetime | None = None,
    end: datetime | None = None,
    reverted: bool | None = None,
) -> QuerySet[Transaction]:
    """Transactions, newest first, with their postings (and accounts) prefetched. `account`
    matches either side of any posting; `account`, `source` and `destination` accept patterns;
    `metadata` is a containment filter (JSONB @>, GIN-indexed); [start, end) is on the
    effective timestamp."""
    qs = Transaction.objects.order_by("-id")
    for value, fields in (
        (account, ("source", "destination")),
        (source, ("source",)),
        (destination, ("destination",)),
    ):
        if value is None:
            continue
        accounts = _accounts_matching(value)
        condition = Q()
        for f in fields:
            condition |= Q(**{f"{f}_id__in": accounts})
        qs = qs.filter(Exists(Posting.objects.filter(condition, transaction_id=OuterRef("pk"))))
    if reference is not None:
        qs = qs.filter(reference=reference)
    if metadata:
        qs = _metadata_filter(qs, metadata)
    start = validate_timestamp(start)
    end = validate_timestamp(end)
    if start is not None:
        qs = qs.filter(timestamp__gte=start)
    if end is not None:
        qs = qs.filter(timestamp__lt=end)
    if reverted is not None:
        reverts = Transaction.objects.filter(reverts_id=OuterRef("pk"))
        qs = qs.filter(Exists(reverts)) if reverted else qs.exclude(Exists(reverts))
    return qs.prefetch_related(
        Prefetch(
            "postings",
            queryset=Posting.objects.select_related("source", "destination").order_by("index"),
        )
    )


def _accounts_matching(value: str) -> QuerySet[Account, int]:
    if "*" in value:
        return accounts_list(pattern=value).values_list("id", flat=True)
    validate_address(value)
    return Account.objects.filter(address=value).values_list("id", flat=True)


def transaction_get(*, transaction_id: int) -> Transaction:
    tx = (
        transactions_list().filter(pk=transaction_id).first()
        if 0 < transaction_id <= MAX_AMOUNT  # ids are bigint: a larger one cannot exist
        else None
    )
    if tx is None:
        raise TransactionNotFound(
            f"Transaction {transaction_id} does not exist.",
            extra={"transaction_id": transaction_id},
        )
    return tx


def transaction_reverted_by(*, transaction_id: int) -> int | None:
    return (
        Transaction.objects.filter(reverts_id=transaction_id).values_list("id", flat=True).first()
    )


# --- balance sheet -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SheetLine:
    address: str
    type: str  # asset, liability, equity, revenue, expense, or "unclassified"
    asset: str
    balance: int  # the ledger's sign: input - output (credit-normal)
    amount: int  # the accountant's sign: debit-normal types negated

    @property
    def debit(self) -> int:
        return -self.balance if self.balance < 0 else 0

    @property
    def credit(self) -> int:
        return self.balance if self.balance > 0 else 0


@dataclass(slots=True)
class AssetSheet:
    """One asset's balance sheet. Totals are in the accountant's sign."""

    asset: str
    lines: list[SheetLine] = field(default_factory=list)
    totals: dict[str, int] = field(default_factory=dict)

    @property
    def net_income(self) -> int:
        return self.totals.get("revenue", 0) - self.totals.get("expense", 0)

    @property
    def liabilities_and_equity(self) -> int:
        """liabilities + equity + (revenue - expense) + unclassified (shown as-is)."""
        return (
            self.totals.get("liability", 0)
            + self.totals.get("equity", 0)
            + self.net_income
            + self.totals.get("unclassified", 0)
        )

    @property
    def balanced(self) -> bool:
        return self.totals.get("asset", 0) == self.liabilities_and_equity

    @property
    def total_debits(self) -> int:
        return sum(line.debit for line in self.lines)

    @property
    def total_credits(self) -> int:
        return sum(line.credit for line in self.lines)

    def fmt(self, amount: int) -> str:
        return format_amount(self.asset, amount)


@dataclass(frozen=True, slots=True)
class BalanceSheet:
    at: datetime | None
    assets: list[AssetSheet]

    @property
    def balanced(self) -> bool:
        return all(sheet.balanced for sheet in self.assets)

    @property
    def unclassified(self) -> list[str]:
        return sorted(
            {line.address for s in self.assets for line in s.lines if line.type == "unclassified"}
        )


SECTIONS = ("asset", "liability", "equity", "revenue", "expense", "unclassified")


def balance_sheet_get(*, at: datetime | None = None) -> BalanceSheet:
    """Balance sheet and trial balance per asset, now or at `at`, from the chart of accounts
    (LEDGER_CHART_OF_ACCOUNTS: first matching pattern wins; `world` is the outside, equity).

    The ledger's sign is credit-normal (balance = input - output): money received shows as a
    negative balance on `stripe:balance`. Asset and expense accounts are debit-normal and shown
    negated, so that assets = liabilities + equity + (revenue - expense) per asset. Accounts no
    pattern matches are listed as "unclassified" and counted on the right-hand side.

    Now: the latest checkpoint run plus every posting it does not cover, in one statement
    (exactly the balance rows; future-dated transactions included); the balance rows when
    there is no run, and on SQLite."""
    chart = Chart.from_setting(conf.get("LEDGER_CHART_OF_ACCOUNTS"))
    sheets: dict[str, AssetSheet] = {}
    at = validate_timestamp(at)
    # now or at `at`, from the checkpoints (the balance rows when there is no run)
    balances = _balances_at(pattern="**", asset=None, at=at)
    for (address, asset), balance in sorted(balances.items()):
        if balance == 0:
            continue
        kind = chart.classify(address) or "unclassified"
        amount = -balance if kind in DEBIT_NORMAL else balance
        sheet = sheets.setdefault(asset, AssetSheet(asset=asset))
        sheet.lines.append(SheetLine(address, kind, asset, balance, amount))
        sheet.totals[kind] = sheet.totals.get(kind, 0) + amount
    for sheet in sheets.values():
        sheet.lines.sort(key=lambda line: (SECTIONS.index(line.type), line.address))
        sheet.totals = {k: sheet.totals.get(k, 0) for k in SECTIONS if k != "unclassified"} | (
            {"unclassified": sheet.totals["unclassified"]} if "unclassified" in sheet.totals else {}
        )
    return BalanceSheet(at=at, assets=[sheets[a] for a in sorted(sheets)])


# --- invariants ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Invariants:
    asset_sums: dict[str, int]  # assets whose balances do not sum to zero (should be empty)
    balance_mismatches: list[tuple[str, str, int, int]]  # (address, asset, rows, postings)
    negative: list[tuple[str, str, int]]  # (address, asset, balance) below zero


def ledger_invariants_check() -> Invariants:
    """I2: per asset, balances sum to zero; I10: every balance equals the sum of its
    postings; and the list of negative balances (legitimate only where overdraft was allowed)."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT asset, sum(input - output) FROM ledger_balance GROUP BY asset "
            "HAVING sum(input - output) <> 0"
        )
        sums = {asset: int(total) for asset, total in cursor.fetchall()}
        cursor.execute(
            "WITH r AS (SELECT account_id, asset, sum(input) AS i, sum(output) AS o "
            "  FROM ledger_balance GROUP BY account_id, asset), "
            "p AS (SELECT account_id, asset, sum(i) AS i, sum(o) AS o FROM ("
            "  SELECT destination_id AS account_id, asset, amount AS i, 0 AS o FROM ledger_posting"
            "  UNION ALL SELECT source_id, asset, 0, amount FROM ledger_posting) x"
            "  GROUP BY account_id, asset) "
            "SELECT a.address, coalesce(r.asset, p.asset), coalesce(r.i - r.o, 0), "
            "  coalesce(p.i - p.o, 0) "
            "FROM r FULL OUTER JOIN p ON p.account_id = r.account_id AND p.asset = r.asset "
            "JOIN ledger_account a ON a.id = coalesce(r.account_id, p.account_id) "
            "WHERE coalesce(r.i, 0) <> coalesce(p.i, 0) OR coalesce(r.o, 0) <> coalesce(p.o, 0) "
            "ORDER BY 1, 2"
        )
        mismatches = [
            (address, asset, int(rows), int(post))
            for address, asset, rows, post in cursor.fetchall()
        ]
        cursor.execute(
            "SELECT a.address, b.asset, sum(b.input - b.output) FROM ledger_balance b "
            "JOIN ledger_account a ON a.id = b.account_id GROUP BY a.address, b.asset "
            "HAVING sum(b.input - b.output) < 0 ORDER BY 1, 2"
        )
        negative = [(address, asset, int(bal)) for address, asset, bal in cursor.fetchall()]
    return Invariants(asset_sums=sums, balance_mismatches=mismatches, negative=negative)
