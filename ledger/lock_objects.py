"""Every row lock the ledger takes, in one place, and the one global order they follow.

Global order, within a database transaction:
1. account rows, by address (created with INSERT ... ON CONFLICT in address order; an account
   row is locked FOR UPDATE only by metadata changes, which take nothing else after it);
2. balance rows, by (account address, asset, shard): a checked (account, asset) locks all its
   shard rows at once; an unchecked one takes only the writer's shard row, by updating it.

The PostgreSQL function `ledger_post` (ledger/pgsql.py) takes the same locks in the same order.
Deadlocks therefore cannot happen between ledger writes; the services still retry on deadlock
and serialization failures (ledger/retry.py) because callers may add their own locks around a
posting, and the Numscript store must lock what the script asks for, as it asks.

On SQLite (the demo's single writer) SELECT ... FOR UPDATE is not available and not needed:
SQLite serializes writers on the database file.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

from django.db import connection

from common.rawsql import fetch_all
from ledger.domain import MAX_AMOUNT
from ledger.models import Account, Balance

_CHUNK = 500  # keeps IN (...) lists under SQLite's bound-parameter limit


def _for_update() -> str:
    return " FOR UPDATE" if connection.features.has_select_for_update else ""


def accounts_get_or_create(*, addresses: Sequence[str], now: datetime) -> dict[str, int]:
    """Create the missing accounts (in address order) and return address -> id."""
    ids: dict[str, int] = {}
    ordered = sorted(set(addresses))
    with connection.cursor() as cursor:
        for start in range(0, len(ordered), _CHUNK):
            chunk = ordered[start : start + _CHUNK]
            placeholders = ", ".join(["(%s, %s, %s)"] * len(chunk))
            params: list[Any] = []
            for address in chunk:
                params += [address, "{}", now]
            cursor.execute(
                "INSERT INTO ledger_account (address, metadata, created_at) "
                f"VALUES {placeholders} ON CONFLICT (address) DO NOTHING",
                params,
            )
            cursor.execute(
                "SELECT address, id FROM ledger_account WHERE address IN "
                f"({', '.join(['%s'] * len(chunk))})",
                chunk,
            )
            ids.update(cursor.fetchall())
    return ids


def account_lock(*, address: str) -> Account:
    """Lock one account row (metadata changes). Raises Account.DoesNotExist."""
    return Account.objects.select_for_update().get(address=address)


def balance_shards_lock(*, account_id: int, asset: str) -> list[tuple[int, int, int]]:
    """Lock every shard row of (account, asset) in shard order: [(shard, input, output)]."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT shard, input, output FROM ledger_balance WHERE account_id = %s AND asset = %s "
            "ORDER BY shard" + _for_update(),
            [account_id, asset],
        )
        return list(cursor.fetchall())


def balance_shard_add(*, account_id: int, asset: str, shard: int, input: int, output: int) -> bool:
    """Add volumes to one shard row, creating it if missing (takes that row's lock). False,
    and nothing written, when a volume would pass the bigint range (the caller reports it
    after its funds checks: see ledger.writer)."""
    with connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO ledger_balance (account_id, asset, shard, input, output) "
            "VALUES (%s, %s, %s, %s, %s) ON CONFLICT (account_id, asset, shard) DO UPDATE SET "
            "input = ledger_balance.input + excluded.input, "
            "output = ledger_balance.output + excluded.output "
            f"WHERE ledger_balance.input <= {MAX_AMOUNT} - excluded.input "
            f"AND ledger_balance.output <= {MAX_AMOUNT} - excluded.output RETURNING input, output",
            [account_id, asset, shard, input, output],
        )
        row = cursor.fetchone()
    return row is not None and all(isinstance(v, int) and v <= MAX_AMOUNT for v in row)


def balance_shard_create(*, account_id: int, asset: str, input: int, output: int) -> bool:
    """Create shard 0 with these volumes unless a concurrent writer created it first (then
    False: lock and check again)."""
    with connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO ledger_balance (account_id, asset, shard, input, output) "
            "VALUES (%s, %s, 0, %s, %s) ON CONFLICT (account_id, asset, shard) DO NOTHING",
            [account_id, asset, input, output],
        )
        return cursor.rowcount == 1


def balances_lock(*, keys: Iterable[tuple[str, str]]) -> dict[tuple[str, str], int]:
    """Lock all shard rows of each (address, asset), in the global order, and return their
    balances (0 for a key without rows). For a key without rows a zero shard-0 row is created
    first, so that a concurrent reader of the same new account waits for us: without a row
    there would be nothing to lock, and two writers could both spend the same overdraft.

    Used by the Numscript store, whose interpreter checks the funds itself."""
    ordered = sorted(set(keys))
    if not ordered:
        return {}
    result = _balances_read_locked(ordered)
    missing = [key for key in ordered if key not in result]
    if missing:
        account_ids = accounts_get_or_create(
            addresses=[address for address, _asset in missing], now=_db_now()
        )
        with connection.cursor() as cursor:
            for address, asset in missing:
                cursor.execute(
                    "INSERT INTO ledger_balance (account_id, asset, shard, input, output) "
                    "VALUES (%s, %s, 0, 0, 0) ON CONFLICT (account_id, asset, shard) DO NOTHING",
                    [account_ids[address], asset],
                )
        result.update(_balances_read_locked(missing))
    return {key: result.get(key, 0) for key in ordered}


def _balances_read_locked(ordered: Sequence[tuple[str, str]]) -> dict[tuple[str, str], int]:
    result: dict[tuple[str, str], int] = {}
    lock = " FOR UPDATE OF b" if connection.features.has_select_for_update else ""
    for start in range(0, len(ordered), _CHUNK):
        chunk = ordered[start : start + _CHUNK]
        values = ", ".join(["(%s, %s, %s)"] * len(chunk))
        params: list[Any] = []
        for i, (address, asset) in enumerate(chunk):
            params += [i, address, asset]
        # rows are locked in the order they are sorted: (address, asset, shard)
        rows = execute_fetchall(
            f"WITH k(i, address, asset) AS (VALUES {values}) "
            "SELECT k.address, k.asset, b.input, b.output FROM k "
            "JOIN ledger_account a ON a.address = k.address "
            "JOIN ledger_balance b ON b.account_id = a.id AND b.asset = k.asset "
            f"ORDER BY k.i, b.shard{lock}",
            params,
        )
        for address, asset, input_, output in rows:
            result[(address, asset)] = result.get((address, asset), 0) + input_ - output
    return result


def execute_fetchall(sql: str, params: Sequence[Any]) -> list[tuple[Any, ...]]:
    """Run a hot-path query. On PostgreSQL as a prepared statement with server-side binding
    (planned once per connection); errors still become Django's through wrap_database_errors."""
    return fetch_all(sql, params, prepare=True)


def _db_now() -> datetime:
    from django.utils import timezone

    return timezone.now()


__all__ = [
    "Balance",
    "account_lock",
    "accounts_get_or_create",
    "balance_shard_add",
    "balance_shard_create",
    "balance_shards_lock",
    "balances_lock",
]
