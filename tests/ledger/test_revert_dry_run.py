"""`transaction_revert(dry_run=True)`: the revert's own path (inverse, checks, locks) rolled
back. What it returns is exactly what the real revert writes; what it refuses, the revert
refuses; it writes nothing (the staff dashboard's revert preview is this call)."""

import pytest

from ledger.errors import AlreadyReverted, InsufficientFunds, TransactionNotFound
from ledger.models import Posting, Transaction
from ledger.selectors import balance_get
from ledger.services import transaction_post, transaction_revert
from tests.ledger.helpers import p, table_counts

pytestmark = pytest.mark.django_db

SPLIT = [
    p("stripe:balance", "orders:9", 5000),
    p("orders:9", "riders:4", 500),
    p("orders:9", "restaurants:8", 3750),
    p("orders:9", "platform:fees", 750),
]


@pytest.fixture
def split(write_path) -> int:
    return transaction_post(postings=SPLIT, overdraft={"stripe:balance": None}).transaction.pk


def written(transaction_id: int) -> list[tuple[str, str, str, int]]:
    """The postings as stored, in their order."""
    return [
        (x.source.address, x.destination.address, x.asset, x.amount)
        for x in Posting.objects.filter(transaction_id=transaction_id)
        .select_related("source", "destination")
        .order_by("index")
    ]


def as_tuples(postings) -> list[tuple[str, str, str, int]]:
    return [(x.source, x.destination, x.asset, x.amount) for x in postings]


def test_the_dry_run_is_what_the_revert_writes_and_writes_nothing(split):
    # given
    before = table_counts()
    kwargs = {"reference": f"undo:{split}", "metadata": {"reason": "double booked"}}

    # when
    dry = transaction_revert(transaction_id=split, dry_run=True, **kwargs)

    # then: nothing written, not even a balance
    assert dry.dry_run is True and dry.replayed is False and dry.transaction.pk is None
    assert table_counts() == before
    assert balance_get(address="orders:9", asset="USD/2") == 0
    assert balance_get(address="restaurants:8", asset="USD/2") == 3750

    # when the revert is made with the same arguments
    real = transaction_revert(transaction_id=split, **kwargs)

    # then it wrote exactly the previewed postings, in that order
    assert as_tuples(dry.postings) == written(real.transaction.pk) == as_tuples(real.postings)
    assert as_tuples(dry.postings) == [
        ("platform:fees", "orders:9", "USD/2", 750),
        ("restaurants:8", "orders:9", "USD/2", 3750),
        ("riders:4", "orders:9", "USD/2", 500),
        ("orders:9", "stripe:balance", "USD/2", 5000),
    ]


def test_the_dry_run_of_a_revert_of_a_revert_is_what_it_writes(split):
    # given: the split reverted; its revert is itself reverted (re-booking the split)
    first = transaction_revert(transaction_id=split).transaction.pk
    before = table_counts()

    # when
    overdraft = {"stripe:balance": None}
    dry = transaction_revert(transaction_id=first, overdraft=overdraft, dry_run=True)
    assert table_counts() == before
    real = transaction_revert(transaction_id=first, overdraft=overdraft)

    # then: the split's postings again
    assert as_tuples(dry.postings) == written(real.transaction.pk) == written(split)
    assert Transaction.objects.get(pk=real.transaction.pk).reverts_id == first


def test_the_dry_run_of_a_reverted_transaction_is_refused_and_writes_nothing(split):
    # given
    transaction_revert(transaction_id=split)
    before = table_counts()

    # when / then: the same refusal as the revert, nothing written
    with pytest.raises(AlreadyReverted) as excinfo:
        transaction_revert(transaction_id=split, dry_run=True)
    assert excinfo.value.message == f"Transaction {split} is already reverted."
    assert excinfo.value.http_status == 409
    assert table_counts() == before


def test_the_dry_run_checks_funds_like_the_revert(split):
    # given: the restaurant's share was moved away: the revert would overdraw it
    transaction_post(postings=[p("restaurants:8", "restaurants:8:payouts:1", 3750)])
    before = table_counts()

    # when / then
    with pytest.raises(InsufficientFunds) as excinfo:
        transaction_revert(transaction_id=split, dry_run=True)
    assert (excinfo.value.account, excinfo.value.needed) == ("restaurants:8", 3750)
    assert table_counts() == before

    # and forced, the dry run passes and still writes nothing
    forced = transaction_revert(transaction_id=split, dry_run=True, force=True)
    assert len(forced.postings) == 4
    assert table_counts() == before


@pytest.mark.parametrize("transaction_id", [999_999_999, 2**63, 0, -1])
def test_the_dry_run_of_an_unknown_transaction(write_path, transaction_id):
    before = table_counts()
    with pytest.raises(TransactionNotFound):
        transaction_revert(transaction_id=transaction_id, dry_run=True)
    assert table_counts() == before
