"""Reading: past balances with backdating, volumes over periods, patterns, balance sheet,
metadata and its history, transaction filters."""

from datetime import UTC, datetime, timedelta

import pytest

from ledger.errors import AccountNotFound, InvalidPattern, MetadataKeyNotFound
from ledger.selectors import (
    account_metadata_get,
    account_metadata_history,
    account_volumes_get,
    balance_get,
    balance_sheet_get,
    balances_get,
    ledger_invariants_check,
    transactions_list,
    volumes_get,
)
from ledger.services import (
    account_metadata_delete,
    account_metadata_set,
    transaction_post,
    transaction_revert,
)
from tests.ledger.helpers import p

pytestmark = pytest.mark.django_db

T0 = datetime(2024, 1, 1, tzinfo=UTC)


def day(n: int) -> datetime:
    return T0 + timedelta(days=n)


def test_balance_at_a_past_instant_reflects_backdated_transactions():
    # given: posted in this order, effective on days 1, 5, then backdated to day 3
    transaction_post(postings=[p("world", "a", 100)], timestamp=day(1))
    transaction_post(postings=[p("a", "b", 30)], timestamp=day(5))
    transaction_post(postings=[p("world", "a", 7)], timestamp=day(3))

    # then
    assert balance_get(address="a", asset="USD/2", at=day(0)) == 0
    assert balance_get(address="a", asset="USD/2", at=day(1)) == 100  # `at` is inclusive
    assert balance_get(address="a", asset="USD/2", at=day(2)) == 100
    assert balance_get(address="a", asset="USD/2", at=day(4)) == 107
    assert balance_get(address="a", asset="USD/2", at=day(6)) == 77
    assert balance_get(address="a", asset="USD/2") == 77
    assert balance_get(address="b", asset="USD/2", at=day(4)) == 0
    assert balances_get(pattern="*", at=day(4)).accounts == {
        "a": {"USD/2": 107},
        "world": {"USD/2": -107},
    }


def test_volumes_over_a_period():
    # given
    transaction_post(postings=[p("world", "a", 100)], timestamp=day(1))
    transaction_post(postings=[p("a", "b", 30)], timestamp=day(5))
    transaction_post(postings=[p("world", "a", 7)], timestamp=day(3))

    # then: [start, end)
    v = volumes_get(address="a", asset="USD/2", start=day(3), end=day(5))
    assert (v.input, v.output, v.balance) == (7, 0, 7)
    v = volumes_get(address="a", asset="USD/2", start=day(3), end=day(6))
    assert (v.input, v.output, v.balance) == (7, 30, -23)
    v = volumes_get(address="a", asset="USD/2")
    assert (v.input, v.output, v.balance) == (107, 30, 77)
    assert account_volumes_get(address="a")["USD/2"].balance == 77
    assert volumes_get(address="nobody", asset="USD/2").balance == 0


def test_balances_aggregated_by_pattern():
    # given
    transaction_post(
        postings=[
            p("world", "restaurants:001", 100),
            p("world", "restaurants:002", 50),
            p("world", "restaurants:001:payouts:1", 10),
            p("world", "restaurants:002:payouts:1", 20),
            p("world", "restaurants:002:payouts:2", 5),
            p("world", "riders:001", 1),
            p("world", "restaurants_x", 1000),
            p("world", "restaurants:003", 3, "EUR/2"),
        ]
    )

    # then
    r = balances_get(pattern="restaurants:*")
    assert r.accounts == {
        "restaurants:001": {"USD/2": 100},
        "restaurants:002": {"USD/2": 50},
        "restaurants:003": {"EUR/2": 3},
    }
    assert r.totals == {"EUR/2": 3, "USD/2": 150}
    r = balances_get(pattern="restaurants:*:payouts:*", asset="USD/2")
    assert r.totals == {"USD/2": 35}
    assert sorted(r.accounts) == [
        "restaurants:001:payouts:1",
        "restaurants:002:payouts:1",
        "restaurants:002:payouts:2",
    ]
    assert balances_get(pattern="restaurants:**").totals == {"EUR/2": 3, "USD/2": 185}
    assert balances_get(pattern="**").totals == {"EUR/2": 0, "USD/2": 0}
    with pytest.raises(InvalidPattern):
        balances_get(pattern="restaurants:%")


def test_balance_sheet_numbers_and_signs(settings):
    # given: a small day at the marketplace
    settings.LEDGER_CHART_OF_ACCOUNTS = [
        ("world", "equity"),
        ("stripe:balance", "asset"),
        ("orders:**", "liability"),
        ("restaurants:**", "liability"),
        ("riders:**", "liability"),
        ("platform:fees", "revenue"),
        ("platform:stripe_fees", "expense"),
    ]
    hot = {"stripe:balance": None}
    # a customer pays 59.00: it arrives at Stripe (our asset) and is owed to the order
    transaction_post(postings=[p("stripe:balance", "orders:1", 5900)], overdraft=hot)
    # Stripe keeps a 2.00 fee: an expense, and less money at Stripe
    transaction_post(
        postings=[p("platform:stripe_fees", "stripe:balance", 200)],
        overdraft={"platform:stripe_fees": None},
    )
    # delivery: the order is split
    transaction_post(
        postings=[
            p("orders:1", "riders:1", 500),
            p("orders:1", "restaurants:1", 4590),
            p("orders:1", "platform:fees", 810),
        ]
    )
    # the platform puts 100.00 of its own money in (equity from the outside)
    transaction_post(postings=[p("stripe:balance", "world", 10000)], overdraft=hot)

    # when
    sheet = balance_sheet_get()

    # then
    (usd,) = sheet.assets
    assert usd.asset == "USD/2"
    amounts = {line.address: (line.type, line.amount) for line in usd.lines}
    assert amounts == {
        "stripe:balance": ("asset", 15700),  # 59.00 - 2.00 + 100.00, shown positive
        "riders:1": ("liability", 500),
        "restaurants:1": ("liability", 4590),
        "world": ("equity", 10000),
        "platform:fees": ("revenue", 810),
        "platform:stripe_fees": ("expense", 200),  # debit-normal, shown positive
    }
    assert usd.totals == {
        "asset": 15700,
        "liability": 5090,
        "equity": 10000,
        "revenue": 810,
        "expense": 200,
    }
    assert usd.net_income == 610
    assert usd.liabilities_and_equity == 15700
    assert usd.balanced is True
    assert usd.total_debits == usd.total_credits == 15900
    assert sheet.balanced is True
    assert sheet.unclassified == []
    # and at an instant before anything happened
    assert balance_sheet_get(at=T0).assets == []


def test_balance_sheet_lists_unclassified_accounts(settings):
    settings.LEDGER_CHART_OF_ACCOUNTS = [("world", "equity")]
    transaction_post(postings=[p("world", "mystery", 5)])
    sheet = balance_sheet_get()
    assert sheet.unclassified == ["mystery"]
    assert sheet.assets[0].totals["unclassified"] == 5
    assert sheet.balanced is True


def test_account_metadata_set_delete_and_history():
    # when
    account_metadata_set(address="restaurants:1", metadata={"commission": "15%", "city": "Paris"})
    account_metadata_set(
        address="restaurants:1", metadata={"commission": "12%", "city": "Paris"}, actor="ops"
    )
    account_metadata_delete(address="restaurants:1", key="city")

    # then
    assert account_metadata_get(address="restaurants:1") == {"commission": "12%"}
    history = [(c.key, c.value, c.actor) for c in account_metadata_history(address="restaurants:1")]
    assert history == [
        ("city", "Paris", ""),
        ("commission", "15%", ""),
        ("commission", "12%", "ops"),
        ("city", None, ""),
    ]
    with pytest.raises(MetadataKeyNotFound):
        account_metadata_delete(address="restaurants:1", key="city")
    with pytest.raises(AccountNotFound):
        account_metadata_delete(address="restaurants:404", key="city")
    assert account_metadata_get(address="restaurants:404") == {}


def test_transactions_list_filters():
    # given
    a = transaction_post(
        postings=[p("world", "restaurants:1", 10)],
        reference="ref-a",
        metadata={"stripe_object": "ch_1", "kind": "payment"},
        timestamp=day(1),
    ).transaction.pk
    b = transaction_post(
        postings=[p("world", "riders:1", 10)],
        metadata={"stripe_object": "re_1"},
        timestamp=day(2),
    ).transaction.pk
    c = transaction_post(
        postings=[p("restaurants:1", "riders:1", 5)], timestamp=day(3)
    ).transaction.pk
    transaction_revert(transaction_id=c)

    def ids(**kwargs):
        return list(transactions_list(**kwargs).values_list("id", flat=True))

    # then
    assert ids(account="restaurants:1")[-2:] == [c, a]
    assert ids(source="restaurants:1") == [c]
    assert ids(destination="riders:*") == [c, b]
    assert ids(reference="ref-a") == [a]
    assert ids(metadata={"stripe_object": "ch_1"}) == [a]
    assert ids(metadata={"stripe_object": "ch_1", "kind": "refund"}) == []
    assert ids(start=day(2), end=day(3)) == [b]
    assert ids(reverted=True) == [c]
    tx = transactions_list(reference="ref-a").get()
    assert [(x.source.address, x.destination.address, x.amount) for x in tx.postings.all()] == [
        ("world", "restaurants:1", 10)
    ]


def test_invariants_hold_and_detect_a_tampered_balance():
    # given
    transaction_post(postings=[p("world", "a", 10), p("a", "b", 4)])
    assert ledger_invariants_check().asset_sums == {}
    assert ledger_invariants_check().balance_mismatches == []
    # when: a balance row is changed behind the ledger's back
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(
            "UPDATE ledger_balance SET input = input + 1 WHERE account_id = "
            "(SELECT id FROM ledger_account WHERE address = 'b')"
        )
    # then
    found = ledger_invariants_check()
    assert found.asset_sums == {"USD/2": 1}
    assert found.balance_mismatches == [("b", "USD/2", 5, 4)]
