"""Reverts: the inverse transaction, at most once, funds-checked unless forced."""

from datetime import UTC, datetime

import pytest

from ledger.errors import AlreadyReverted, InsufficientFunds, ReferenceConflict, TransactionNotFound
from ledger.models import Transaction
from ledger.selectors import balance_get, transactions_list
from ledger.services import transaction_post, transaction_revert
from tests.ledger.helpers import p, table_counts

pytestmark = pytest.mark.django_db

SPLIT = [
    p("stripe:balance", "orders:1", 5000),
    p("orders:1", "riders:7", 500),
    p("orders:1", "restaurants:3", 3750),
    p("orders:1", "platform:fees", 750),
]


@pytest.fixture
def split(write_path) -> int:
    return transaction_post(postings=SPLIT, overdraft={"stripe:balance": None}).transaction.pk


def test_revert_posts_the_inverse_and_restores_balances(split):
    # when
    result = transaction_revert(transaction_id=split, metadata={"reason": "cancelled"})

    # then
    assert result.replayed is False
    assert result.postings == (
        p("platform:fees", "orders:1", 750),
        p("restaurants:3", "orders:1", 3750),
        p("riders:7", "orders:1", 500),
        p("orders:1", "stripe:balance", 5000),
    )
    revert = Transaction.objects.get(pk=result.transaction.pk)
    assert revert.reverts_id == split
    assert revert.metadata == {"reason": "cancelled"}
    for address in ("stripe:balance", "orders:1", "riders:7", "restaurants:3", "platform:fees"):
        assert balance_get(address=address, asset="USD/2") == 0
    assert list(transactions_list(reverted=True).values_list("id", flat=True)) == [split]


def test_reverting_twice_is_refused(split):
    # given
    transaction_revert(transaction_id=split)
    before = table_counts()

    # when / then
    with pytest.raises(AlreadyReverted) as excinfo:
        transaction_revert(transaction_id=split)
    assert excinfo.value.http_status == 409
    assert table_counts() == before


def test_revert_with_a_reference_is_idempotent(split):
    first = transaction_revert(transaction_id=split, reference="revert:1")
    again = transaction_revert(transaction_id=split, reference="revert:1")
    assert again.replayed is True
    assert again.transaction.pk == first.transaction.pk
    with pytest.raises(ReferenceConflict):
        transaction_revert(transaction_id=split, reference="revert:1", metadata={"x": "y"})


def test_a_revert_that_would_overdraw_is_refused_unless_forced(split):
    # given: the restaurant was paid out, so the money is gone from its account
    transaction_post(postings=[p("restaurants:3", "restaurants:3:payouts:1", 3750)])
    before = table_counts()

    # when / then
    with pytest.raises(InsufficientFunds) as excinfo:
        transaction_revert(transaction_id=split)
    assert excinfo.value.account == "restaurants:3"
    assert table_counts() == before

    # when forced
    transaction_revert(transaction_id=split, force=True)

    # then
    assert balance_get(address="restaurants:3", asset="USD/2") == -3750
    assert balance_get(address="orders:1", asset="USD/2") == 0


def test_revert_may_keep_the_original_effective_date(write_path):
    ts = datetime(2024, 3, 1, 9, tzinfo=UTC)
    original = transaction_post(postings=[p("world", "a", 10)], timestamp=ts).transaction.pk
    result = transaction_revert(transaction_id=original, at_original_timestamp=True)
    assert Transaction.objects.get(pk=result.transaction.pk).timestamp == ts


def test_reverting_an_unknown_transaction(write_path):
    with pytest.raises(TransactionNotFound) as excinfo:
        transaction_revert(transaction_id=999_999)
    assert excinfo.value.http_status == 404
