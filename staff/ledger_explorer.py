"""What the ledger explorer pages read (read-only, no locks): accounts by pattern as a tree
with their O(1) balances, one account's postings newest first by keyset with a running
balance, one transaction with its revert and its seal (re-verified by
`ledger.services.sealing.seal_link_verify`), search by reference / metadata / Stripe id.
Everything goes through `ledger.selectors` where it exists; the one query it lacks (an
account's postings page) is here, index-backed: postings by (account, asset, timestamp) on
either side. A revert's preview is the ledger's own dry run (`staff/views/ledger.py`).

Bad input raises `ExplorerError` with a sentence for the page (never a 500)."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from django.core import signing
from django.db import connection

from config.errors import ApplicationError
from ledger.domain import MAX_AMOUNT, validate_address, validate_pattern
from ledger.models import Account, Transaction
from ledger.selectors import (
    account_balances_map,
    accounts_list,
    balance_get,
    transaction_get,
    transaction_reverted_by,
    transactions_list,
    volumes_get,
)
from ledger.services.sealing import SealLink, seal_link_verify

TREE_LIMIT = 500  # accounts shown for one pattern; narrow the pattern for more
PAGE_SIZE = 50
_CURSOR_SALT = "staff.ledger.postings"


class ExplorerError(ValueError):
    """Input the explorer cannot answer: the message says why, in words for the page."""


# --- accounts by pattern ------------------------------------------------------------------


@dataclass
class TreeRow:
    depth: int
    segment: str
    prefix: str  # the address up to this segment
    is_account: bool
    balances: dict[str, int] = field(default_factory=dict)  # this account's own
    subtotal: dict[str, int] = field(default_factory=dict)  # itself and everything below


@dataclass
class Tree:
    pattern: str
    rows: list[TreeRow]
    accounts: int
    truncated: bool
    totals: dict[str, int]


def pattern_check(pattern: str) -> str:
    pattern = (pattern or "").strip()
    if not pattern:
        raise ExplorerError("Enter an address pattern, e.g. restaurants:* or orders:1042:**.")
    if len(pattern) > 255:
        raise ExplorerError("The pattern is too long (255 characters at most).")
    try:
        return validate_pattern(pattern)
    except ApplicationError as exc:
        raise ExplorerError(exc.message) from None


def accounts_tree(*, pattern: str, limit: int = TREE_LIMIT) -> Tree:
    """Accounts matching `pattern` (at most `limit`, by address) grouped by segment, each with
    its balances per asset (the balance rows: O(1) per account) and subtotals per node."""
    pattern = pattern_check(pattern)
    accounts = list(accounts_list(pattern=pattern).values_list("id", "address")[: limit + 1])
    truncated = len(accounts) > limit
    accounts = accounts[:limit]
    balances = account_balances_map(account_ids=[pk for pk, _ in accounts])
    nodes: dict[str, TreeRow] = {}
    order: list[str] = []
    totals: dict[str, int] = defaultdict(int)
    for pk, address in accounts:
        parts = address.split(":")
        own = balances.get(pk, {})
        for asset, amount in own.items():
            totals[asset] += amount
        for depth in range(len(parts)):
            prefix = ":".join(parts[: depth + 1])
            node = nodes.get(prefix)
            if node is None:
                node = nodes[prefix] = TreeRow(depth, parts[depth], prefix, False)
                order.append(prefix)
            for asset, amount in own.items():
                node.subtotal[asset] = node.subtotal.get(asset, 0) + amount
        leaf = nodes[address]
        leaf.is_account = True
        leaf.balances = dict(own)
    rows = [nodes[p] for p in sorted(order, key=lambda p: p.split(":"))]
    return Tree(pattern, rows, len(accounts), truncated, dict(sorted(totals.items())))


# --- one account ----------------------------------------------------------------------------


def address_check(address: str) -> str:
    try:
        return validate_address((address or "").strip())
    except ApplicationError as exc:
        raise ExplorerError(exc.message) from None


def account_find(*, address: str) -> Account | None:
    return Account.objects.filter(address=address_check(address)).first()


def account_assets(*, account: Account) -> dict[str, int]:
    return account_balances_map(account_ids=[account.pk]).get(account.pk, {})


@dataclass(frozen=True)
class PostingRow:
    transaction_id: int
    index: int
    timestamp: datetime
    counterparty: str
    direction: str  # "in" (credit to this account) or "out"
    amount: int
    balance_after: int  # the account's balance in this asset once this posting applied
    reference: str | None
    reverts_id: int | None


@dataclass(frozen=True)
class PostingsPage:
    asset: str
    balance: int  # now
    rows: list[PostingRow]
    next_cursor: str | None


def _cursor_read(cursor: str, account_id: int, asset: str) -> tuple[datetime, int, int, int]:
    try:
        data = signing.loads(cursor, salt=_CURSOR_SALT)
        acc, cur_asset, ts, tx_id, index, balance = data
        if acc != account_id or cur_asset != asset:
            raise ValueError
        return datetime.fromisoformat(ts), int(tx_id), int(index), int(balance)
    except (signing.BadSignature, ValueError, TypeError):
        raise ExplorerError(
            "That page link is not valid: start from the newest postings."
        ) from None


def account_postings(
    *, account: Account, asset: str, cursor: str | None = None, size: int = PAGE_SIZE
) -> PostingsPage:
    """The account's postings in `asset`, newest first by (timestamp, transaction, index),
    `size` at a time. The running balance starts from the balance rows (O(1)) and is carried
    to the next page in a signed cursor, so no page ever sums the history. Two index scans
    ((source|destination, asset, timestamp)), each stopped at `size` rows."""
    key_clause, key_params = "", []
    start_balance = 0
    if cursor:
        ts, tx_id, index, start_balance = _cursor_read(cursor, account.pk, asset)
        key_clause = ' AND (p.timestamp, p.transaction_id, p."index") < (%s, %s, %s)'
        key_params = [ts, tx_id, index]
    side = (
        '(SELECT p.transaction_id, p."index", p.timestamp, p.amount, {sign} AS delta, p.{other}'
        " AS other_id FROM ledger_posting p WHERE p.{me} = %s AND p.asset = %s" + key_clause + ""
        ' ORDER BY p.timestamp DESC, p.transaction_id DESC, p."index" DESC LIMIT %s)'
    )
    sql = (
        'SELECT x.transaction_id, x."index", x.timestamp, x.amount, x.delta, a.address, '
        "t.reference, t.reverts_id, "
        "(SELECT coalesce(sum(b.input - b.output), 0) FROM ledger_balance b "
        " WHERE b.account_id = %s AND b.asset = %s) "
        "FROM ("
        + side.format(sign="p.amount", other="source_id", me="destination_id")
        + " UNION ALL "
        + side.format(sign="-p.amount", other="destination_id", me="source_id")
        + ") x JOIN ledger_account a ON a.id = x.other_id "
        "JOIN ledger_transaction t ON t.id = x.transaction_id "
        'ORDER BY x.timestamp DESC, x.transaction_id DESC, x."index" DESC, x.delta LIMIT %s'
    )
    params: list[Any] = [account.pk, asset]
    for _ in range(2):
        params += [account.pk, asset, *key_params, size + 1]
    params.append(size + 1)
    with connection.cursor() as c:
        c.execute(sql, params)
        fetched = c.fetchall()
    if not fetched:
        current = balance_get(address=account.address, asset=asset)
        return PostingsPage(asset, current, [], None)
    current = int(fetched[0][8])
    running = start_balance if cursor else current
    rows = []
    for tx_id, index, ts, amount, delta, other, reference, reverts_id, _ in fetched[:size]:
        rows.append(
            PostingRow(
                tx_id,
                index,
                ts,
                other,
                "in" if delta > 0 else "out",
                int(amount),
                running,
                reference,
                reverts_id,
            )
        )
        running -= int(delta)
    next_cursor = None
    if len(fetched) > size:
        last = rows[-1]
        next_cursor = signing.dumps(
            [
                account.pk,
                asset,
                last.timestamp.isoformat(),
                last.transaction_id,
                last.index,
                running,
            ],
            salt=_CURSOR_SALT,
        )
    return PostingsPage(asset, current, rows, next_cursor)


def account_volumes(
    *, address: str, asset: str, start: datetime | None, end: datetime | None
) -> tuple[int, int]:
    v = volumes_get(address=address, asset=asset, start=start, end=end)
    return v.input, v.output


# --- one transaction ------------------------------------------------------------------------


def transaction_id_check(raw: Any) -> int:
    text = str(raw or "").strip().lstrip("#")
    if not (text.isascii() and text.isdigit()):
        raise ExplorerError(f"“{text[:40]}” is not a transaction id (a positive whole number).")
    value = int(text)
    if not 0 < value <= MAX_AMOUNT:
        raise ExplorerError(f"There is no transaction {text[:40]}: ids are 1 to {MAX_AMOUNT}.")
    return value


def seal_status(*, transaction: Transaction) -> SealLink:
    """This transaction's link of the hash chain, re-verified by the ledger."""
    return seal_link_verify(transaction_id=transaction.pk)


@dataclass(frozen=True)
class TransactionView:
    tx: Transaction
    reverted_by: int | None
    seal: SealLink


def transaction_view(*, transaction_id: int) -> TransactionView | None:
    try:
        tx = transaction_get(transaction_id=transaction_id)
    except ApplicationError:
        return None
    return TransactionView(
        tx, transaction_reverted_by(transaction_id=tx.pk), seal_status(transaction=tx)
    )


# --- search ---------------------------------------------------------------------------------

STRIPE_PREFIXES = ("ch_", "pi_", "re_", "dp_", "tr_", "trr_", "po_", "tu_", "py_", "txn_")


def transactions_search(*, query: str, limit: int = 50) -> list[Transaction]:
    """By reference (exact), `key=value` (metadata containment), a Stripe id (the metadata's
    `stripe_object`, `balance_transaction` or `charge`), or a transaction id."""
    q = (query or "").strip()[:255]
    if not q:
        return []
    if q.lstrip("#").isdigit():
        try:
            return [transaction_get(transaction_id=transaction_id_check(q))]
        except ApplicationError:
            return []
    found = list(transactions_list(reference=q)[:limit])
    if found:
        return found
    if "=" in q:
        key, _, value = q.partition("=")
        return list(transactions_list(metadata={key.strip(): value.strip()})[:limit])
    if q.startswith(STRIPE_PREFIXES):
        seen: dict[int, Transaction] = {}
        for key in ("stripe_object", "balance_transaction", "charge"):
            for tx in transactions_list(metadata={key: q})[:limit]:
                seen.setdefault(tx.pk, tx)
        return sorted(seen.values(), key=lambda t: -t.pk)[:limit]
    return []
