"""Storing prepared transactions' results: the layer under both front ends (`posting` for
postings, `scripts` for Numscript). What a post returns (`PostResult`), which write path
runs, and the answer to a reference that already exists (a replay, or a ReferenceConflict).

Dependencies point one way: `ledger.domain` (validate, prepare) -> `storing` and `writer`
(write, replay) -> `scripts` -> `posting` (the public front end, which hands scripts over).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from django.db import DEFAULT_DB_ALIAS, DataError, connection
from django.db.models.base import ModelState

from ledger import conf, writer
from ledger.domain import MAX_AMOUNT, PostingInput
from ledger.errors import InvalidAmount, ReferenceConflict
from ledger.models import Transaction


@dataclass(frozen=True, slots=True)
class PostResult:
    """What a post returned. `replayed`: the reference was already posted with the same content
    and this is the original transaction. `dry_run`: nothing was written (transaction.id is
    None). `account_meta`: account metadata a Numscript script set."""

    transaction: Transaction
    replayed: bool
    postings: tuple[PostingInput, ...]
    account_meta: dict[str, dict[str, str]] = field(default_factory=dict)
    dry_run: bool = False


@contextmanager
def volumes_in_range() -> Iterator[None]:
    """Report a volume past the bigint range (DataError 22003 from either write path) as
    InvalidAmount."""
    try:
        yield
    except DataError as exc:
        if getattr(exc.__cause__, "sqlstate", None) != "22003":  # numeric_value_out_of_range
            raise
        raise InvalidAmount(
            "The transaction would take an account's volumes beyond the maximum storable "
            f"amount {MAX_AMOUNT}."
        ) from None


def use_fast_path() -> bool:
    return connection.vendor == "postgresql" and conf.get("LEDGER_WRITE_PATH") == "postgres"


def transaction_from(item: writer.PreparedTx, written: writer.Written) -> Transaction:
    """The stored transaction as a model instance, without reading it back. Built like
    Model.from_db does for a loaded row, minus the generic __init__ (a tenth of the Python time
    of a posting): every concrete field is set."""
    tx = Transaction.__new__(Transaction)
    tx.__dict__.update(
        id=written.id,
        reference=item.reference,
        timestamp=written.timestamp,
        inserted_at=written.inserted_at,
        metadata=item.metadata,
        idempotency_hash=item.fingerprint,
        reverts_id=item.reverts,
    )
    state = ModelState()
    state.adding = False
    state.db = DEFAULT_DB_ALIAS
    tx._state = state
    return tx


def replay(item: writer.PreparedTx, written: writer.Written) -> PostResult:
    """The reference exists: the same request is a replay, anything else a conflict."""
    original = Transaction.objects.get(pk=written.id)
    same_content = written.stored_hash == item.fingerprint
    same_time = item.timestamp is None or item.timestamp == original.timestamp
    if not (same_content and same_time):
        raise ReferenceConflict(
            f"Reference {item.reference!r} was already used by transaction {original.pk} with "
            "different content.",
            extra={"reference": item.reference, "transaction_id": original.pk},
        )
    return PostResult(
        transaction=original, replayed=True, postings=tuple(transaction_postings(original.pk))
    )


_POSTINGS_SQL = (
    "SELECT (SELECT a.address FROM ledger_account a WHERE a.id = p.source_id), "
    "(SELECT a.address FROM ledger_account a WHERE a.id = p.destination_id), p.asset, p.amount "
    'FROM ledger_posting p WHERE p.transaction_id = %s ORDER BY p."index"'
)


def transaction_postings(transaction_id: int) -> list[PostingInput]:
    """A stored transaction's postings, in order. The addresses are primary-key probes, never a
    join: on stale statistics (a replay right after a bulk load) PostgreSQL planned the ORM's
    join as a hash of every account, 26 ms for three postings at 59k accounts."""
    with connection.cursor() as cursor:
        cursor.execute(_POSTINGS_SQL, [transaction_id])
        return [PostingInput(*row) for row in cursor.fetchall()]
