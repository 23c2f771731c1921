"""Concurrent writers on PostgreSQL, through the same hot accounts: no lost update, no
overdraft, no deadlock, no error other than the expected business ones."""

from __future__ import annotations

import contextlib
import random
import threading
import time
from collections import Counter
from collections.abc import Callable

import pytest
from django.db import connection, connections

from ledger.errors import AlreadyReverted, InsufficientFunds
from ledger.models import Transaction
from ledger.selectors import balance_get, ledger_invariants_check
from ledger.services import transaction_post, transaction_revert
from tests.ledger.helpers import p

pytestmark = pytest.mark.django_db(transaction=True)

HOT = {"stripe:balance": None}


def _run_threads(n: int, work: Callable[[int], None]) -> list[BaseException]:
    """Run work(i) in n threads, each with its own connection; return unexpected errors."""
    errors: list[BaseException] = []
    barrier = threading.Barrier(n)

    def target(i: int) -> None:
        try:
            barrier.wait()
            work(i)
        except BaseException as exc:
            errors.append(exc)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=target, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not any(t.is_alive() for t in threads)
    return errors


def _deadlocks() -> int:
    time.sleep(1.1)  # cumulative statistics are flushed at most once a second per backend
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_stat_force_next_flush()")
        cursor.execute("SELECT pg_stat_clear_snapshot()")
        cursor.execute("SELECT deadlocks FROM pg_stat_database WHERE datname = current_database()")
        return cursor.fetchone()[0]


def test_splits_and_payouts_through_hot_accounts(write_path):
    # given: 8 writers; even ones deliver orders (credit 4 restaurants through the hot
    # accounts), odd ones pay restaurants out (debits checked under lock)
    writers, rounds = 8, 40
    restaurants = [f"restaurants:{r}" for r in range(4)]
    payouts = Counter[str]()
    refused = Counter[str]()
    lock = threading.Lock()
    deadlocks_before = _deadlocks()

    def work(w: int) -> None:
        rng = random.Random(w)
        for i in range(rounds):
            restaurant = restaurants[rng.randrange(4)]
            if w % 2 == 0:
                order = f"orders:{w}-{i}"
                transaction_post(
                    postings=[
                        p("stripe:balance", order, 1000),
                        p(order, restaurant, 850),
                        p(order, "riders:1", 100),
                        p(order, "platform:fees", 50),
                    ],
                    overdraft=HOT,
                )
            else:
                try:
                    transaction_post(postings=[p(restaurant, f"{restaurant}:payouts:{w}-{i}", 600)])
                    with lock:
                        payouts[restaurant] += 600
                except InsufficientFunds:
                    with lock:
                        refused[restaurant] += 1

    # when
    errors = _run_threads(writers, work)

    # then: no error leaked, every balance exact, none overdrawn
    assert errors == []
    orders = (writers // 2) * rounds
    assert balance_get(address="stripe:balance", asset="USD/2") == -1000 * orders
    assert balance_get(address="platform:fees", asset="USD/2") == 50 * orders
    assert balance_get(address="riders:1", asset="USD/2") == 100 * orders
    credited = Counter[str]()
    for tx in Transaction.objects.prefetch_related("postings__destination"):
        for posting in tx.postings.all():
            if posting.destination.address in restaurants:
                credited[posting.destination.address] += posting.amount
    for r in restaurants:
        balance = balance_get(address=r, asset="USD/2")
        assert balance == credited[r] - payouts[r]
        assert balance >= 0
    assert sum(payouts.values()) + 600 * sum(refused.values()) == 600 * orders
    invariants = ledger_invariants_check()
    assert invariants.asset_sums == {}
    assert invariants.balance_mismatches == []
    assert invariants.negative == [("stripe:balance", "USD/2", -1000 * orders)]
    assert _deadlocks() == deadlocks_before


def test_crossing_transfers_never_deadlock(write_path):
    # given: 4 accounts with funds, and writers moving money between them in every order,
    # several checked debits per transaction
    accounts = [f"wallets:{i}" for i in range(4)]
    transaction_post(postings=[p("world", a, 10_000) for a in accounts])
    deadlocks_before = _deadlocks()

    def work(w: int) -> None:
        rng = random.Random(100 + w)
        for _ in range(30):
            a, b, c = rng.sample(accounts, 3)
            with contextlib.suppress(InsufficientFunds):
                transaction_post(
                    postings=[p(a, b, rng.randint(1, 50)), p(c, a, rng.randint(1, 50))]
                )

    # when
    errors = _run_threads(8, work)

    # then
    assert errors == []
    assert sum(balance_get(address=a, asset="USD/2") for a in accounts) == 40_000
    assert all(balance_get(address=a, asset="USD/2") >= 0 for a in accounts)
    assert _deadlocks() == deadlocks_before


def test_concurrent_overdraft_on_a_new_account_is_spent_once(write_path):
    # given: 6 writers each taking 60 from a new account allowed to overdraw up to 100

    results: list[str] = []
    lock = threading.Lock()

    def work(w: int) -> None:
        try:
            transaction_post(
                postings=[p("riders:new", "platform:losses", 60)], overdraft={"riders:new": 100}
            )
            outcome = "ok"
        except InsufficientFunds:
            outcome = "refused"
        with lock:
            results.append(outcome)

    # when
    errors = _run_threads(6, work)

    # then
    assert errors == []
    assert sorted(results) == ["ok"] + ["refused"] * 5
    assert balance_get(address="riders:new", asset="USD/2") == -60


def test_the_same_reference_posted_concurrently_is_written_once(write_path):
    results = []
    lock = threading.Lock()

    def work(w: int) -> None:
        result = transaction_post(
            postings=[p("stripe:balance", "orders:1", 5900)],
            overdraft=HOT,
            reference="ch_1:capture",
        )
        with lock:
            results.append((result.transaction.pk, result.replayed))

    errors = _run_threads(8, work)

    assert errors == []
    assert len({pk for pk, _ in results}) == 1
    assert sorted(replayed for _, replayed in results) == [False] + [True] * 7
    assert Transaction.objects.count() == 1
    assert balance_get(address="orders:1", asset="USD/2") == 5900


def test_a_transaction_reverted_concurrently_is_reverted_once(write_path):
    original = transaction_post(postings=[p("world", "a", 10)]).transaction.pk
    outcomes = []
    lock = threading.Lock()

    def work(w: int) -> None:
        try:
            transaction_revert(transaction_id=original)
            outcome = "reverted"
        except AlreadyReverted:
            outcome = "already"
        with lock:
            outcomes.append(outcome)

    errors = _run_threads(6, work)

    assert errors == []
    assert sorted(outcomes) == ["already"] * 5 + ["reverted"]
    assert balance_get(address="a", asset="USD/2") == 0
    assert Transaction.objects.filter(reverts_id=original).count() == 1
