"""Helpers of the ledger tests."""

from __future__ import annotations

from django.db import connection

from ledger.domain import PostingInput


def p(source: str, destination: str, amount: int, asset: str = "USD/2") -> PostingInput:
    return PostingInput(source, destination, asset, amount)


def count(table: str) -> int:
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT count(*) FROM {table}")
        return cursor.fetchone()[0]


def table_counts() -> dict[str, int]:
    return {
        t: count(t)
        for t in (
            "ledger_account",
            "ledger_transaction",
            "ledger_posting",
            "ledger_balance",
            "ledger_unsealed",
        )
    }
