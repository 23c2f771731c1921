"""transaction_post: balances, validation, overdraft rules, replays. Every test runs on both
write paths (`write_path`): the PostgreSQL function and the portable Python path."""

from datetime import UTC, datetime, timedelta

import pytest
from django.db import transaction

from ledger.errors import (
    InsufficientFunds,
    InvalidAddress,
    InvalidAmount,
    InvalidAsset,
    InvalidMetadata,
    InvalidTransaction,
    ReferenceConflict,
)
from ledger.models import Posting, Transaction
from ledger.selectors import balance_get, volumes_get
from ledger.services import PostingInput, transaction_post
from tests.ledger.helpers import p, table_counts

pytestmark = pytest.mark.django_db

SPLIT = [
    p("stripe:balance", "orders:1", 5000),
    p("orders:1", "riders:7", 500),
    p("orders:1", "restaurants:3", 3750),
    p("orders:1", "platform:fees", 750),
]


def test_post_moves_money_and_keeps_balances(write_path):
    # when
    result = transaction_post(
        postings=SPLIT,
        overdraft={"stripe:balance": None},
        metadata={"stripe_object": "ch_1", "order": 1},
    )

    # then
    assert result.replayed is False
    assert result.postings == tuple(SPLIT)
    tx = Transaction.objects.get(pk=result.transaction.pk)
    assert tx.metadata == {"stripe_object": "ch_1", "order": 1}
    assert tx.timestamp == result.transaction.timestamp
    assert list(
        Posting.objects.filter(transaction=tx)
        .order_by("index")
        .values_list("source__address", "destination__address", "asset", "amount")
    ) == [(x.source, x.destination, x.asset, x.amount) for x in SPLIT]
    assert balance_get(address="stripe:balance", asset="USD/2") == -5000
    assert balance_get(address="orders:1", asset="USD/2") == 0
    assert balance_get(address="riders:7", asset="USD/2") == 500
    assert balance_get(address="restaurants:3", asset="USD/2") == 3750
    assert balance_get(address="platform:fees", asset="USD/2") == 750
    assert volumes_get(address="orders:1", asset="USD/2").input == 5000
    assert volumes_get(address="orders:1", asset="USD/2").output == 5000


def test_accounts_are_created_on_first_use(write_path):
    # when
    transaction_post(postings=[p("world", "users:a-1:wallet_main", 10)])

    # then
    from ledger.models import Account

    assert sorted(Account.objects.values_list("address", flat=True)) == [
        "users:a-1:wallet_main",
        "world",
    ]


def test_insufficient_funds_writes_nothing(write_path):
    # given
    transaction_post(postings=[p("world", "restaurants:1", 300)])
    before = table_counts()

    # when
    with pytest.raises(InsufficientFunds) as excinfo:
        transaction_post(
            postings=[p("restaurants:1", "restaurants:1:payouts:1", 500)],
            reference="payout-1",
        )

    # then
    err = excinfo.value
    assert (err.account, err.asset, err.needed, err.available) == (
        "restaurants:1",
        "USD/2",
        500,
        300,
    )
    assert err.code == "insufficient_funds"
    assert table_counts() == before
    assert balance_get(address="restaurants:1", asset="USD/2") == 300
    assert not Transaction.objects.filter(reference="payout-1").exists()


def test_world_may_always_go_negative(write_path):
    transaction_post(postings=[p("world", "bank:platform", 10**12)])
    assert balance_get(address="world", asset="USD/2") == -(10**12)


def test_bounded_overdraft_allows_down_to_the_bound_and_no_further(write_path):
    # when
    transaction_post(postings=[p("riders:1", "platform:losses", 70)], overdraft={"riders:1": 100})
    transaction_post(postings=[p("riders:1", "platform:losses", 30)], overdraft={"riders:1": 100})

    # then
    assert balance_get(address="riders:1", asset="USD/2") == -100
    with pytest.raises(InsufficientFunds) as excinfo:
        transaction_post(
            postings=[p("riders:1", "platform:losses", 1)], overdraft={"riders:1": 100}
        )
    assert (excinfo.value.needed, excinfo.value.available) == (1, 0)
    with pytest.raises(InsufficientFunds):
        transaction_post(postings=[p("riders:1", "platform:losses", 1)])
    assert balance_get(address="riders:1", asset="USD/2") == -100


def test_unbounded_overdraft(write_path):
    transaction_post(
        postings=[p("stripe:balance", "orders:9", 10**15)], overdraft={"stripe:balance": None}
    )
    assert balance_get(address="stripe:balance", asset="USD/2") == -(10**15)


def test_postings_are_checked_in_order_like_numscript(write_path):
    # given: an empty order account
    # when: money comes in first, then goes out: allowed
    transaction_post(postings=[p("world", "orders:2", 100), p("orders:2", "restaurants:1", 100)])
    # then: going out before it comes in is refused, even though the end balance would be 0
    with pytest.raises(InsufficientFunds) as excinfo:
        transaction_post(
            postings=[p("orders:3", "restaurants:1", 100), p("world", "orders:3", 100)]
        )
    assert excinfo.value.account == "orders:3"
    assert balance_get(address="orders:3", asset="USD/2") == 0


def test_a_posting_to_itself_still_needs_the_funds(write_path):
    with pytest.raises(InsufficientFunds):
        transaction_post(postings=[p("riders:1", "riders:1", 5)])
    transaction_post(postings=[p("world", "riders:1", 5)])
    transaction_post(postings=[p("riders:1", "riders:1", 5)])
    assert balance_get(address="riders:1", asset="USD/2") == 5


def test_assets_are_separate(write_path):
    # given
    transaction_post(postings=[p("world", "a", 100, "EUR/2")])

    # when / then: EUR does not pay for USD
    with pytest.raises(InsufficientFunds) as excinfo:
        transaction_post(postings=[p("a", "b", 1, "USD/2")])
    assert excinfo.value.asset == "USD/2"
    transaction_post(postings=[p("a", "b", 100, "EUR/2"), p("world", "b", 5, "JPY")])
    assert balance_get(address="b", asset="EUR/2") == 100
    assert balance_get(address="b", asset="JPY") == 5
    assert balance_get(address="a", asset="EUR/2") == 0


@pytest.mark.parametrize(
    ("posting", "error", "code"),
    [
        (
            {"source": "bad address", "destination": "x", "asset": "USD/2", "amount": 1},
            InvalidAddress,
            "invalid_address",
        ),
        (
            {"source": "a::b", "destination": "x", "asset": "USD/2", "amount": 1},
            InvalidAddress,
            "invalid_address",
        ),
        (
            {"source": "world", "destination": "", "asset": "USD/2", "amount": 1},
            InvalidAddress,
            "invalid_address",
        ),
        (
            {"source": "world", "destination": "x" * 256, "asset": "USD/2", "amount": 1},
            InvalidAddress,
            "invalid_address",
        ),
        (
            {"source": "world", "destination": "x", "asset": "usd/2", "amount": 1},
            InvalidAsset,
            "invalid_asset",
        ),
        (
            {"source": "world", "destination": "x", "asset": "USD/two", "amount": 1},
            InvalidAsset,
            "invalid_asset",
        ),
        (
            {"source": "world", "destination": "x", "asset": "USD/2", "amount": 0},
            InvalidAmount,
            "invalid_amount",
        ),
        (
            {"source": "world", "destination": "x", "asset": "USD/2", "amount": -1},
            InvalidAmount,
            "invalid_amount",
        ),
        (
            {"source": "world", "destination": "x", "asset": "USD/2", "amount": 2**63},
            InvalidAmount,
            "invalid_amount",
        ),
        (
            {"source": "world", "destination": "x", "asset": "USD/2", "amount": 1.5},
            InvalidAmount,
            "invalid_amount",
        ),
        (
            {"source": "world", "destination": "x", "asset": "USD/2", "amount": "100"},
            InvalidAmount,
            "invalid_amount",
        ),
        (
            {"source": "world", "destination": "x", "asset": "USD/2", "amount": True},
            InvalidAmount,
            "invalid_amount",
        ),
        (
            {"source": "world", "destination": "x", "asset": "USD/2"},
            InvalidAmount,
            "invalid_amount",
        ),
        (
            {"source": "world", "destination": "x", "asset": "USD/2", "amount": 1, "fee": 2},
            InvalidTransaction,
            "invalid_transaction",
        ),
    ],
)
def test_invalid_postings_are_refused_and_write_nothing(write_path, posting, error, code):
    # given
    before = table_counts()

    # when
    with pytest.raises(error) as excinfo:
        transaction_post(postings=[posting])

    # then
    assert excinfo.value.code == code
    assert table_counts() == before


def test_the_largest_storable_amount_is_accepted_and_overflowing_volumes_refused(write_path):
    # given
    biggest = 2**63 - 1
    transaction_post(postings=[p("world", "vault", biggest)])
    before = table_counts()

    # when / then: another unit would overflow the volumes of `world` and `vault`
    with pytest.raises(InvalidAmount) as excinfo:
        transaction_post(postings=[p("world", "vault", 1), p("world", "vault", biggest)])
    assert "maximum storable amount" in excinfo.value.message
    assert balance_get(address="vault", asset="USD/2") == biggest
    assert table_counts() == before


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"postings": []}, InvalidTransaction),
        ({}, InvalidTransaction),
        ({"postings": [p("world", "a", 1)], "metadata": {"rate": 1.5}}, InvalidMetadata),
        ({"postings": [p("world", "a", 1)], "metadata": ["x"]}, InvalidMetadata),
        ({"postings": [p("world", "a", 1)], "overdraft": {"a": -1}}, InvalidAmount),
        ({"postings": [p("world", "a", 1)], "timestamp": datetime(2024, 1, 1)}, Exception),
    ],
)
def test_invalid_requests(write_path, kwargs, error):
    before = table_counts()
    with pytest.raises(error):
        transaction_post(**kwargs)
    assert table_counts() == before


def test_same_reference_same_content_is_a_replay(write_path):
    # given
    first = transaction_post(
        postings=SPLIT, reference="split:1", overdraft={"stripe:balance": None}, metadata={"k": "v"}
    )
    before = table_counts()

    # when
    again = transaction_post(
        postings=SPLIT, reference="split:1", overdraft={"stripe:balance": None}, metadata={"k": "v"}
    )

    # then
    assert again.replayed is True
    assert again.transaction.pk == first.transaction.pk
    assert again.postings == tuple(SPLIT)
    assert table_counts() == before
    assert balance_get(address="restaurants:3", asset="USD/2") == 3750


@pytest.mark.parametrize(
    "change",
    [
        {"postings": [*SPLIT[:3], p("orders:1", "platform:fees", 751)]},
        {"postings": list(reversed(SPLIT))},
        {"metadata": {"k": "other"}},
        {"timestamp": datetime(2020, 1, 1, tzinfo=UTC)},
    ],
)
def test_same_reference_different_content_is_a_conflict(write_path, change):
    # given
    first = transaction_post(
        postings=SPLIT,
        reference="split:1",
        overdraft={"stripe:balance": None},
        metadata={"k": "v"},
        timestamp=datetime(2024, 5, 1, tzinfo=UTC),
    )
    before = table_counts()
    request = {"postings": SPLIT, "metadata": {"k": "v"}} | change

    # when
    with pytest.raises(ReferenceConflict) as excinfo:
        transaction_post(reference="split:1", overdraft={"stripe:balance": None}, **request)

    # then
    assert excinfo.value.extra["transaction_id"] == first.transaction.pk
    assert excinfo.value.http_status == 409
    assert table_counts() == before


def test_a_replay_may_omit_the_timestamp_or_repeat_it(write_path):
    ts = datetime(2024, 5, 1, 12, tzinfo=UTC)
    first = transaction_post(postings=[p("world", "a", 1)], reference="r", timestamp=ts)
    assert transaction_post(postings=[p("world", "a", 1)], reference="r").replayed is True
    again = transaction_post(postings=[p("world", "a", 1)], reference="r", timestamp=ts)
    assert again.replayed is True
    assert again.transaction.pk == first.transaction.pk


def test_dry_run_checks_everything_and_writes_nothing(write_path):
    # given
    transaction_post(postings=[p("world", "restaurants:1", 100)])
    before = table_counts()

    # when
    result = transaction_post(postings=[p("restaurants:1", "x", 100)], dry_run=True)

    # then
    assert result.dry_run is True
    assert result.transaction.pk is None
    assert result.postings == (p("restaurants:1", "x", 100),)
    assert table_counts() == before
    with pytest.raises(InsufficientFunds):
        transaction_post(postings=[p("restaurants:1", "x", 101)], dry_run=True)
    assert table_counts() == before


def test_backdated_timestamp_is_kept(write_path):
    ts = datetime.now(UTC) - timedelta(days=30)
    result = transaction_post(postings=[p("world", "a", 1)], timestamp=ts)
    tx = Transaction.objects.get(pk=result.transaction.pk)
    assert tx.timestamp == ts
    assert tx.inserted_at > ts
    assert Posting.objects.get(transaction=tx).timestamp == ts


def test_a_failure_inside_an_outer_transaction_leaves_it_usable(write_path):
    # given: a caller's own transaction (the marketplace's service, say)
    with transaction.atomic():
        transaction_post(postings=[p("world", "a", 5)])
        # when: a nested post fails
        with pytest.raises(InsufficientFunds):
            transaction_post(postings=[p("a", "b", 6)])
        # then: the caller goes on
        transaction_post(postings=[p("a", "b", 5)])
    assert balance_get(address="b", asset="USD/2") == 5
    assert balance_get(address="a", asset="USD/2") == 0


def test_posting_input_accepts_dataclasses_and_dicts(write_path):
    transaction_post(
        postings=[
            PostingInput("world", "a", "COIN", 3),
            {"source": "a", "destination": "b", "asset": "COIN", "amount": 2},
        ]
    )
    assert balance_get(address="a", asset="COIN") == 1


def test_a_volume_overflow_in_the_database_is_a_clean_error(write_path):
    # given: an account whose input volume is already the largest storable amount
    transaction_post(postings=[p("world", "vault", 2**63 - 1)])
    before = table_counts()

    # when: one more unit, which only the database can see overflow
    with pytest.raises(InvalidAmount) as excinfo:
        transaction_post(
            postings=[p("bank:platform", "vault", 1)], overdraft={"bank:platform": None}
        )

    # then
    assert excinfo.value.code == "invalid_amount"
    assert table_counts() == before


@pytest.mark.parametrize("reference", ['a "quoted" \\ {ref}, with, commas', "NULL", "ünïcødé ✓"])
def test_any_reference_string_round_trips(write_path, reference):
    first = transaction_post(postings=[p("world", "a", 1)], reference=reference)
    assert Transaction.objects.get(pk=first.transaction.pk).reference == reference
    assert transaction_post(postings=[p("world", "a", 1)], reference=reference).replayed is True


def test_the_returned_transaction_equals_the_stored_one(write_path):
    result = transaction_post(
        postings=[p("world", "a", 5)], reference="r", metadata={"k": [1, "x"]}
    )
    stored = Transaction.objects.get(pk=result.transaction.pk)
    for field in Transaction._meta.concrete_fields:
        assert getattr(result.transaction, field.attname) == getattr(stored, field.attname)
    assert result.transaction._state.adding is False
