"""transactions_post_bulk: all-or-nothing, or independent with per-item results."""

import pytest

from ledger.domain import TxInput
from ledger.errors import InsufficientFunds, InvalidAmount, ReferenceConflict
from ledger.models import Transaction
from ledger.selectors import balance_get
from ledger.services import transaction_post, transactions_post_bulk
from tests.ledger.helpers import p, table_counts

pytestmark = pytest.mark.django_db


def _order(i: int) -> dict:
    return {
        "postings": [
            p("stripe:balance", f"orders:{i}", 1000),
            p(f"orders:{i}", f"restaurants:{i % 3}", 850),
            p(f"orders:{i}", "platform:fees", 150),
        ],
        "overdraft": {"stripe:balance": None},
        "reference": f"order:{i}",
        "metadata": {"order": i},
    }


def test_atomic_bulk_posts_everything_in_order(write_path):
    # when
    results = transactions_post_bulk(items=[_order(i) for i in range(30)])

    # then
    assert [r.index for r in results] == list(range(30))
    assert all(r.ok and not r.result.replayed for r in results)
    ids = [r.result.transaction.pk for r in results]
    assert ids == sorted(ids)
    assert Transaction.objects.count() == 30
    assert balance_get(address="platform:fees", asset="USD/2") == 4500
    assert balance_get(address="restaurants:0", asset="USD/2") == 850 * 10
    assert balance_get(address="stripe:balance", asset="USD/2") == -30_000
    assert Transaction.objects.get(reference="order:7").metadata == {"order": 7}


def test_atomic_bulk_checks_items_in_sequence(write_path):
    # given: the second item spends what the first brings in
    items = [
        TxInput(postings=[p("world", "riders:1", 100)]),
        TxInput(postings=[p("riders:1", "riders:1:payouts:1", 100)]),
    ]
    # when
    transactions_post_bulk(items=items)
    # then
    assert balance_get(address="riders:1:payouts:1", asset="USD/2") == 100
    # and in the other order it is refused, all or nothing
    before = table_counts()
    with pytest.raises(InsufficientFunds):
        transactions_post_bulk(
            items=[
                TxInput(postings=[p("riders:2", "riders:2:payouts:1", 100)]),
                TxInput(postings=[p("world", "riders:2", 100)]),
            ]
        )
    assert table_counts() == before


def test_atomic_bulk_refuses_everything_for_one_invalid_item(write_path):
    before = table_counts()
    zero = {"source": "world", "destination": "a", "asset": "USD/2", "amount": 0}
    items = [_order(1), {"postings": [zero]}]
    with pytest.raises(InvalidAmount) as excinfo:
        transactions_post_bulk(items=items)
    assert excinfo.value.extra["index"] == 1
    assert table_counts() == before


def test_bulk_replays_existing_references_and_refuses_conflicts(write_path):
    # given
    transaction_post(**_order(1))
    # when: a batch repeating order 1 and adding order 2
    results = transactions_post_bulk(items=[_order(1), _order(2)])
    # then
    assert [r.result.replayed for r in results] == [True, False]
    assert Transaction.objects.count() == 2
    # a conflicting reference makes the atomic batch fail, naming the item
    before = table_counts()
    changed = _order(1) | {"metadata": {"order": "changed"}}
    with pytest.raises(ReferenceConflict) as excinfo:
        transactions_post_bulk(items=[_order(3), changed])
    assert excinfo.value.extra["index"] == 1
    assert table_counts() == before


def test_the_same_reference_twice_in_one_batch(write_path):
    results = transactions_post_bulk(items=[_order(5), _order(5)])
    assert [r.result.replayed for r in results] == [False, True]
    assert results[0].result.transaction.pk == results[1].result.transaction.pk
    assert Transaction.objects.count() == 1


def test_independent_bulk_reports_each_item(write_path):
    # given
    items = [
        _order(1),
        {"postings": [p("riders:9", "x", 1)]},  # insufficient funds
        {
            "postings": [
                {"source": "world", "destination": "bad address", "asset": "USD/2", "amount": 1}
            ]
        },
        _order(2),
        _order(1) | {"metadata": {"order": "changed"}},  # conflicts with item 0
    ]

    # when
    results = transactions_post_bulk(items=items, atomic=False)

    # then
    assert [r.index for r in results] == [0, 1, 2, 3, 4]
    assert [r.ok for r in results] == [True, False, False, True, False]
    assert [r.error.code for r in results if r.error] == [
        "insufficient_funds",
        "invalid_address",
        "reference_conflict",
    ]
    assert Transaction.objects.count() == 2
    assert balance_get(address="platform:fees", asset="USD/2") == 300
