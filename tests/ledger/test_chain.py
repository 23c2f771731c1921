"""The hash chain: sealing after commit, in order; verify names the first broken link."""

import threading
from datetime import timedelta

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection, connections, transaction

from ledger.domain import GENESIS_HASH, chain_hash, transaction_canonical
from ledger.models import Seal, Transaction, Unsealed
from ledger.services import chain_verify, transaction_post, transactions_seal
from tests.ledger.helpers import p


def _post(n: int, start: int = 0) -> list[int]:
    return [
        transaction_post(
            postings=[p("world", f"a:{i}", i + 1)], reference=f"r{i}", metadata={"i": i}
        ).transaction.pk
        for i in range(start, start + n)
    ]


@pytest.mark.django_db
def test_seal_chains_every_transaction_in_order():
    # given
    ids = _post(5)

    # when
    sealed = transactions_seal()

    # then
    assert sealed == 5
    assert Unsealed.objects.count() == 0
    seals = list(Seal.objects.order_by("seq"))
    assert [s.transaction_id for s in seals] == ids
    assert [s.seq for s in seals] == [1, 2, 3, 4, 5]
    assert seals[0].prev_hash == GENESIS_HASH
    assert all(seals[i].prev_hash == seals[i - 1].hash for i in range(1, 5))
    tx = Transaction.objects.get(pk=ids[0])
    expected = chain_hash(
        GENESIS_HASH,
        transaction_canonical(
            id=tx.pk,
            reference="r0",
            timestamp=tx.timestamp,
            inserted_at=tx.inserted_at,
            metadata={"i": 0},
            postings=[("world", "a:0", "USD/2", 1)],
            reverts=None,
        ),
    )
    assert seals[0].hash == expected
    # sealing again seals nothing; new transactions extend the chain
    assert transactions_seal() == 0
    _post(1, start=5)
    assert transactions_seal() == 1
    report = chain_verify()
    assert report.ok is True
    assert report.checked == 6


@pytest.mark.django_db
def test_seal_in_batches():
    _post(7)
    assert transactions_seal(batch_size=3) == 7
    assert chain_verify().checked == 7


@pytest.mark.django_db
def test_verify_names_the_first_broken_link_after_tampering(superuser_cursor):
    # given: a sealed chain of 5
    ids = _post(5)
    transactions_seal()
    assert chain_verify().ok is True

    # when: a superuser changes a posting of the third transaction with triggers disabled
    with connection.cursor() as cursor:
        cursor.execute(
            "UPDATE ledger_posting SET amount = amount + 100 WHERE transaction_id = %s",
            [ids[2]],
        )
        cursor.execute(
            "UPDATE ledger_balance SET input = input + 100 WHERE account_id = "
            "(SELECT destination_id FROM ledger_posting WHERE transaction_id = %s)",
            [ids[2]],
        )

    # then: verify finds it, even though the balances were doctored to match
    report = chain_verify()
    assert report.ok is False
    assert report.broken is not None
    assert (report.broken.seq, report.broken.transaction_id) == (3, ids[2])
    assert report.broken.reason == "hash does not match the transaction's content"
    assert report.checked == 2
    assert report.asset_sums == {"USD/2": 100}


@pytest.mark.django_db
def test_verify_finds_a_rewritten_seal_and_a_changed_metadata(superuser_cursor):
    ids = _post(4)
    transactions_seal()
    with connection.cursor() as cursor:
        cursor.execute(
            "UPDATE ledger_transaction SET metadata = '{\"i\": 99}' WHERE id = %s", [ids[3]]
        )
    assert chain_verify().broken.seq == 4
    with connection.cursor() as cursor:
        cursor.execute("UPDATE ledger_seal SET prev_hash = repeat('a', 64) WHERE seq = 2")
    broken = chain_verify().broken
    assert (broken.seq, broken.reason) == (2, "prev_hash does not match the previous seal's hash")


@pytest.mark.django_db
def test_verify_reports_unsealed_and_unqueued_transactions(superuser_cursor):
    ids = _post(2)
    report = chain_verify(unsealed_after=timedelta(seconds=-1))
    assert report.unsealed_total == 2
    assert report.unsealed_stale == ids
    assert report.ok is False
    assert chain_verify(unsealed_after=timedelta(hours=1)).ok is True
    # a queue row removed behind the sealer's back: the transaction would never be sealed
    with connection.cursor() as cursor:
        cursor.execute("DELETE FROM ledger_unsealed WHERE transaction_id = %s", [ids[0]])
    assert chain_verify().unqueued == [ids[0]]


@pytest.mark.django_db
def test_verify_command_exits_non_zero_on_a_broken_chain(superuser_cursor, capsys):
    ids = _post(3)
    call_command("ledger", "seal")
    call_command("ledger", "verify")
    assert "OK" in capsys.readouterr().out
    with connection.cursor() as cursor:
        cursor.execute("UPDATE ledger_transaction SET reference = 'forged' WHERE id = %s", [ids[1]])
    with pytest.raises(CommandError) as excinfo:
        call_command("ledger", "verify")
    assert excinfo.value.returncode == 1
    assert f"BROKEN LINK at seal 2 (transaction {ids[1]})" in capsys.readouterr().err


@pytest.mark.django_db(transaction=True)
def test_a_transaction_that_commits_late_is_sealed_later_never_skipped():
    # given: a writer holds an open transaction with a lower id...
    started, release = threading.Event(), threading.Event()
    late: list[int] = []

    def slow_writer() -> None:
        try:
            with transaction.atomic():
                late.append(transaction_post(postings=[p("world", "slow", 1)]).transaction.pk)
                started.set()
                release.wait(10)
        finally:
            connections.close_all()

    thread = threading.Thread(target=slow_writer)
    thread.start()
    assert started.wait(10)
    # ...while a later transaction commits and is sealed
    # (from another source: the slow writer holds its balance rows until it commits)
    fast = transaction_post(
        postings=[p("bank:platform", "fast", 1)], overdraft={"bank:platform": None}
    ).transaction.pk
    assert transactions_seal() == 1
    assert late[0] < fast

    # when: the slow one commits
    release.set()
    thread.join()
    assert transactions_seal() == 1

    # then: both are in the chain, in seal order
    assert list(Seal.objects.order_by("seq").values_list("transaction_id", flat=True)) == [
        fast,
        late[0],
    ]
    assert chain_verify().ok is True


@pytest.mark.django_db(transaction=True)
def test_only_one_sealer_runs_at_a_time():
    # given: a sealer holding the advisory lock in another connection
    _post(3)
    from ledger.services.sealing import SEALER_LOCK_KEY

    holding, release = threading.Event(), threading.Event()

    def other_sealer() -> None:
        try:
            with transaction.atomic(), connection.cursor() as cursor:
                cursor.execute("SELECT pg_advisory_xact_lock(%s)", [SEALER_LOCK_KEY])
                holding.set()
                release.wait(10)
        finally:
            connections.close_all()

    thread = threading.Thread(target=other_sealer)
    thread.start()
    assert holding.wait(10)
    # when / then: this sealer backs off
    assert transactions_seal() == 0
    release.set()
    thread.join()
    assert transactions_seal() == 3
