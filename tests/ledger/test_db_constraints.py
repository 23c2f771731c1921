"""The database itself refuses what the ledger forbids, whatever code path tries (raw SQL)."""

import pytest
from django.db import DatabaseError, IntegrityError, connection, transaction

from ledger.services import transaction_post, transaction_revert, transactions_seal
from tests.ledger.helpers import count, p


def _raw(sql: str, params: list | None = None) -> None:
    with transaction.atomic(), connection.cursor() as cursor:
        # The test's own transaction has deferred foreign-key checks pending, which would
        # make PostgreSQL refuse a TRUNCATE before our trigger even runs: check them now.
        cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")
        cursor.execute(sql, params or [])


def _sqlstate(exc: BaseException) -> str | None:
    return getattr(exc.__cause__, "sqlstate", None)


@pytest.fixture
def posted(db) -> int:
    result = transaction_post(postings=[p("world", "stripe:balance", 100)], reference="r1")
    transactions_seal()
    return result.transaction.pk


@pytest.mark.parametrize(
    "sql",
    [
        "UPDATE ledger_posting SET amount = amount + 1",
        "DELETE FROM ledger_posting",
        "TRUNCATE ledger_posting CASCADE",
        "UPDATE ledger_transaction SET metadata = '{\"x\": 1}'",
        "UPDATE ledger_transaction SET timestamp = now() - interval '1 day'",
        "DELETE FROM ledger_transaction",
        "TRUNCATE ledger_transaction CASCADE",
        "UPDATE ledger_seal SET hash = repeat('0', 64)",
        "DELETE FROM ledger_seal",
        "TRUNCATE ledger_seal",
        "DELETE FROM ledger_account",
        "UPDATE ledger_account SET address = 'thief'",
        "TRUNCATE ledger_account CASCADE",
        "DELETE FROM ledger_balance",
        "TRUNCATE ledger_balance",
    ],
)
def test_append_only_tables_refuse_changes_in_raw_sql(posted, sql):
    # given: a sealed transaction
    before = (count("ledger_posting"), count("ledger_transaction"), count("ledger_seal"))

    # when / then: the trigger refuses, whatever the statement
    with pytest.raises(DatabaseError) as excinfo:
        _raw(sql)
    assert _sqlstate(excinfo.value) == "LD002"
    assert "append-only" in str(excinfo.value)
    assert (count("ledger_posting"), count("ledger_transaction"), count("ledger_seal")) == before


def test_account_metadata_may_change_but_history_may_not(posted):
    # given
    from ledger.services import account_metadata_set

    account_metadata_set(address="stripe:balance", metadata={"owner": "platform"})

    # when: the account's metadata column is updated directly: allowed (history is separate)
    _raw("UPDATE ledger_account SET metadata = '{}' WHERE address = 'stripe:balance'")

    # then: the history rows are append-only
    with pytest.raises(DatabaseError) as excinfo:
        _raw("UPDATE ledger_accountmetadatachange SET value = 'thief'")
    assert _sqlstate(excinfo.value) == "LD002"
    with pytest.raises(DatabaseError):
        _raw("DELETE FROM ledger_accountmetadatachange")


def test_check_constraint_refuses_a_zero_or_negative_posting(posted):
    # given
    with connection.cursor() as cursor:
        cursor.execute("SELECT id FROM ledger_account WHERE address = 'world'")
        world = cursor.fetchone()[0]

    # when / then
    for amount in (0, -5):
        with pytest.raises(IntegrityError) as excinfo:
            _raw(
                "INSERT INTO ledger_posting (transaction_id, index, source_id, destination_id, "
                "asset, amount, timestamp) VALUES (%s, 7, %s, %s, 'USD/2', %s, now())",
                [posted, world, world, amount],
            )
        assert _sqlstate(excinfo.value) == "23514"  # check_violation
        assert "ledger_posting_amount_gt_0" in str(excinfo.value)
    assert count("ledger_posting") == 1


def test_unique_reference_is_enforced_by_the_database(posted):
    # when / then
    with pytest.raises(IntegrityError) as excinfo:
        _raw(
            "INSERT INTO ledger_transaction (reference, timestamp, inserted_at, metadata) "
            "VALUES ('r1', now(), now(), '{}')"
        )
    assert _sqlstate(excinfo.value) == "23505"
    assert "ledger_transaction_reference_uniq" in str(excinfo.value)
    # ...while any number of transactions may have no reference
    _raw(
        "INSERT INTO ledger_transaction (reference, timestamp, inserted_at, metadata) "
        "VALUES (NULL, now(), now(), '{}'), (NULL, now(), now(), '{}')"
    )
    assert count("ledger_transaction") == 3


def test_a_transaction_is_reverted_at_most_once_by_the_database(posted):
    # given
    transaction_revert(transaction_id=posted, force=True)

    # when / then
    with pytest.raises(IntegrityError) as excinfo:
        _raw(
            "INSERT INTO ledger_transaction (timestamp, inserted_at, metadata, reverts_id) "
            "VALUES (now(), now(), '{}', %s)",
            [posted],
        )
    assert "ledger_transaction_reverts_uniq" in str(excinfo.value)


def test_account_address_must_be_valid_in_the_database(db):
    with pytest.raises(IntegrityError) as excinfo:
        _raw(
            "INSERT INTO ledger_account (address, metadata, created_at) "
            "VALUES ('bad address!', '{}', now())"
        )
    assert "ledger_account_address_valid" in str(excinfo.value)


def test_balance_volumes_may_not_be_negative(posted):
    with pytest.raises(IntegrityError) as excinfo:
        _raw("UPDATE ledger_balance SET input = -1")
    assert "ledger_balance_volumes_gte_0" in str(excinfo.value)


@pytest.mark.django_db(transaction=True)
def test_flush_is_refused_on_a_database_that_is_not_a_test_database(monkeypatch):
    # given: a posted transaction, and a connection that looks like a real (non-test) database
    from django.core.management import call_command
    from django.core.management.base import CommandError

    transaction_post(postings=[p("world", "stripe:balance", 100)], reference="keep-me")
    monkeypatch.setitem(connection.settings_dict, "NAME", "eats")

    # when: someone runs `manage.py flush` there
    with pytest.raises(CommandError):
        call_command("flush", interactive=False, verbosity=0)

    # then: the append-only triggers refused it and nothing was deleted
    monkeypatch.undo()
    assert count("ledger_transaction") == 1
