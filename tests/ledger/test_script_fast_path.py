"""The Numscript fast path (read unlocked, then one write that checks the reads under its row
locks) and the writer-shard slots: a stale read never writes, the script runs again under
locks; two writers in flight never share a shard row."""

from __future__ import annotations

import threading
import time

import pytest
from django.db import connection, connections, transaction

from ledger import conf, writer
from ledger.domain import plan_postings
from ledger.models import Balance, Transaction
from ledger.pgsql import SHARD_SLOT_LOCK_SPACE
from ledger.selectors import balance_get
from ledger.services import script_reads, scripts, transaction_post
from tests.ledger.helpers import p

SWEEP = "vars { account $s account $d }\nsend [USD/2 *] ( source = $s destination = $d )"


@pytest.fixture(autouse=True)
def _fresh_read_plans():
    script_reads.forget_read_plans()
    yield
    script_reads.forget_read_plans()


@pytest.mark.django_db(transaction=True)
def test_a_balance_moved_after_the_read_is_caught_by_the_write_and_the_script_runs_again(
    monkeypatch,
):
    # given: 1000 in wallets:1, and a concurrent writer that credits it 500 right after the
    # script's unlocked read (from its own connection, committed)
    transaction_post(postings=[p("world", "wallets:1", 1000)])
    real_read = script_reads._read
    raced: list[bool] = []

    def read_then_race(*args, **kwargs):
        snapshot = real_read(*args, **kwargs)
        if not raced:
            raced.append(True)

            def credit() -> None:
                try:
                    transaction_post(postings=[p("world", "wallets:1", 500)])
                finally:
                    connections.close_all()

            t = threading.Thread(target=credit)
            t.start()
            t.join(30)
        return snapshot

    monkeypatch.setattr(script_reads, "_read", read_then_race)
    locked_runs: list[int] = []
    real_locked = scripts._run_locked

    def counted(*args, **kwargs):
        locked_runs.append(1)
        return real_locked(*args, **kwargs)

    monkeypatch.setattr(scripts, "_run_locked", counted)

    # when: the script sweeps the whole balance
    result = transaction_post(script=SWEEP, vars={"s": "wallets:1", "d": "shop"})

    # then: the write refused the stale read (1000), the script ran again under locks and
    # swept 1500; one transaction for the sweep
    assert raced == [True]
    assert locked_runs == [1]
    assert [x.amount for x in result.postings] == [1500]
    assert balance_get(address="wallets:1", asset="USD/2") == 0
    assert balance_get(address="shop", asset="USD/2") == 1500
    assert Transaction.objects.count() == 3


@pytest.mark.django_db
def test_a_template_is_read_in_one_round_trip_from_its_second_run(monkeypatch, write_path):
    # (the read plan, for runs that do not speculate: a run that speculates reads nothing, see
    # test_script_drain.py)
    monkeypatch.setattr(scripts, "should_speculate", lambda program: False)
    # given: a funded order and the restaurant's commission
    transaction_post(postings=[p("world", "orders:1", 1000), p("world", "orders:2", 2000)])
    from ledger.services import account_metadata_set

    account_metadata_set(address="restaurants:1", metadata={"commission": "10%"})
    script = (
        "vars { account $order account $restaurant\n"
        '  portion $c = meta($restaurant, "commission") }\n'
        "send [USD/2 *] ( source = $order destination = {\n"
        "  $c to @platform:fees\n  remaining to $restaurant } )"
    )
    reads: list[tuple[list[str], list[tuple[str, str]]]] = []
    real_read = script_reads._read

    def counted(*args):
        reads.append((list(args[0]), list(args[1])))
        return real_read(*args)

    monkeypatch.setattr(script_reads, "_read", counted)

    # when: the template runs twice, for two orders
    first = transaction_post(
        script=script, vars={"order": "orders:1", "restaurant": "restaurants:1"}
    )
    second = transaction_post(
        script=script, vars={"order": "orders:2", "restaurant": "restaurants:1"}
    )

    # then: on PostgreSQL, the first run read as the interpreter asked (metadata, then the
    # balance); the second read both at once, for its own order
    assert [x.amount for x in first.postings] == [100, 900]
    assert [x.amount for x in second.postings] == [200, 1800]
    if write_path == "postgres":
        assert reads == [
            (["restaurants:1"], []),
            ([], [("orders:1", "USD/2")]),
            (["restaurants:1"], [("orders:2", "USD/2")]),
        ]
    else:
        assert reads == []  # under locks, through LedgerStore


@pytest.mark.django_db
@pytest.mark.parametrize("write", [writer.write_postgres, writer.write_portable])
def test_both_writers_refuse_a_stale_expectation_and_write_nothing(write):
    # given: 70 in a
    transaction_post(postings=[p("world", "a", 70)])
    item = writer.PreparedTx([p("a", "b", 50)], None, {}, None, {}, None)
    plan = plan_postings([(item.postings, {})], check=False)
    key = next(k for k in plan.keys if k.address == "a")
    key.required = key.expect = 60  # what a script would have read

    # when / then
    with pytest.raises(writer.StaleRead) as stale, transaction.atomic():
        write([item], plan)
    assert (stale.value.key.address, stale.value.balance) == ("a", 70)
    assert Transaction.objects.count() == 1

    # and with the right expectation the write goes through
    key.required = key.expect = 70
    with transaction.atomic():
        write([item], plan)
    assert balance_get(address="b", asset="USD/2") == 50


def _shard_of(address: str) -> set[int]:
    return set(
        Balance.objects.filter(account__address=address, asset="USD/2").values_list(
            "shard", flat=True
        )
    )


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("path", ["postgres", "portable"])
def test_a_writer_never_takes_the_shard_slot_of_a_transaction_in_flight(settings, path):
    # given: another connection's open transaction holds this connection's own slot
    settings.LEDGER_WRITE_PATH = path
    shards = conf.get("LEDGER_BALANCE_SHARDS")
    connection.ensure_connection()
    own = connection.connection.info.backend_pid % shards
    held = threading.Event()
    release = threading.Event()

    def hold() -> None:
        try:
            with transaction.atomic(), connection.cursor() as cursor:
                cursor.execute(
                    "SELECT pg_try_advisory_xact_lock(%s, %s)", [SHARD_SLOT_LOCK_SPACE, own]
                )
                assert cursor.fetchone()[0] is True
                held.set()
                release.wait(30)
        finally:
            connections.close_all()

    holder = threading.Thread(target=hold)
    holder.start()
    assert held.wait(30)
    try:
        # when: this connection credits a hot account (unchecked: the writer's shard)
        transaction_post(postings=[p("world", "platform:fees", 5)])
    finally:
        release.set()
        holder.join(30)

    # then: it used the next free slot; once the holder is done, its own again
    assert _shard_of("platform:fees") == {(own + 1) % shards}
    transaction_post(postings=[p("world", "platform:fees", 5)])
    assert _shard_of("platform:fees") == {own, (own + 1) % shards}
    with connection.cursor() as cursor:  # and nothing outlives a transaction (PgBouncer)
        cursor.execute(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND database = "
            "(SELECT oid FROM pg_database WHERE datname = current_database())"
        )
        assert cursor.fetchone()[0] == 0


@pytest.mark.django_db(transaction=True)
def test_two_writers_in_flight_do_not_wait_for_each_other_on_a_hot_account():
    # given: the accounts exist (creating one makes a concurrent creator wait for the unique
    # index), and a writer holds its transaction open after crediting platform:fees
    transaction_post(postings=[p("world", "platform:fees", 1)])
    posted = threading.Event()
    release = threading.Event()

    def first() -> None:
        try:
            with transaction.atomic():
                transaction_post(postings=[p("world", "platform:fees", 1)])
                posted.set()
                release.wait(30)
        finally:
            connections.close_all()

    t = threading.Thread(target=first)
    t.start()
    assert posted.wait(30)
    try:
        # when: a second writer credits the same account
        started = time.monotonic()
        transaction_post(postings=[p("world", "platform:fees", 1)])
        waited = time.monotonic() - started
    finally:
        release.set()
        t.join(30)

    # then: it did not queue behind the first one's row lock (that would last until the
    # first commits, i.e. until released above, 30 s at most), and two shard rows hold 1 each
    assert waited < 4  # lock_timeout is 5 s
    assert len(_shard_of("platform:fees")) == 2
    assert balance_get(address="platform:fees", asset="USD/2") == 3
