"""`manage.py ledger balance-sheet | balances | seal | verify` and `manage.py bench ledger`."""

import json

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from ledger.services import transaction_post
from tests.ledger.helpers import p

pytestmark = pytest.mark.django_db


def test_balance_sheet_command_prints_sections_and_the_check(capsys):
    # given
    transaction_post(
        postings=[p("stripe:balance", "orders:1", 5900)], overdraft={"stripe:balance": None}
    )
    transaction_post(
        postings=[p("orders:1", "platform:fees", 900), p("orders:1", "restaurants:1", 5000)]
    )

    # when
    call_command("ledger", "balance-sheet")

    # then
    out = capsys.readouterr().out
    assert "Balance sheet USD/2" in out
    assert "stripe:balance" in out
    assert "59.00" in out
    assert "Liabilities" in out and "Revenue" in out
    assert "59.00 = 59.00 OK" in out


def test_balance_sheet_at_a_past_instant_and_bad_input(capsys):
    call_command("ledger", "balance-sheet", "--at", "2000-01-01T00:00:00Z")
    assert "the ledger is empty" in capsys.readouterr().out
    with pytest.raises(CommandError):
        call_command("ledger", "balance-sheet", "--at", "yesterday")


def test_balances_command(capsys):
    transaction_post(postings=[p("world", "restaurants:1", 150), p("world", "restaurants:2", 50)])
    call_command("ledger", "balances", "restaurants:*")
    out = capsys.readouterr().out
    assert "restaurants:1" in out and "1.50" in out
    assert "2.00" in out  # the total
    with pytest.raises(CommandError) as excinfo:
        call_command("ledger", "balances", "a:%")
    assert "invalid_pattern" in str(excinfo.value)


def test_seal_then_verify(capsys):
    transaction_post(postings=[p("world", "a", 1)])
    call_command("ledger", "seal")
    assert "sealed 1 transaction(s)" in capsys.readouterr().out
    call_command("ledger", "verify")
    out = capsys.readouterr().out
    assert "1 seal(s) verified" in out
    assert out.strip().endswith("OK")


@pytest.mark.django_db(transaction=True)
def test_bench_ledger_quick_prints_the_required_keys(capsys, settings, monkeypatch):
    # given: tiny sizes, this checks the shape, not the speed
    from benchmarks import ledger as benchmarks

    monkeypatch.setattr(benchmarks, "RESTAURANTS", 10)
    monkeypatch.setattr(benchmarks, "RIDERS", 10)
    tiny = benchmarks.Sizes(serial=40, per_writer=10, bulk_batches=1, history=200, reads=50)
    monkeypatch.setattr(benchmarks, "SIZES", {True: tiny, False: tiny})

    # when
    call_command("bench", "ledger", "--quick")

    # then
    line = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    for key in (
        "serial_tx_per_s",
        "contention_tx_per_s",
        "contention_errors",
        "bulk_postings_per_s",
        "balance_read_p50_ms",
        "balance_read_postings",
        "raw_sql_tx_per_s",
        "contention_writers_by_state",
    ):
        assert key in line, key
    assert line["contention_errors"] == 0
    assert line["balance_read_postings"] >= 200
    states = line["contention_writers_by_state"]
    assert set(states) == {"cpu", "wal", "lock", "client", "other"}
    # the mean number of the 4 writers' backends seen in each state
    assert all(n >= 0 for n in states.values())
    assert sum(states.values()) <= 4.05


@pytest.mark.parametrize(
    ("state", "wait_type", "wait_event", "expected"),
    [
        ("active", None, None, "cpu"),
        ("active", "IO", "WALSync", "wal"),
        ("active", "LWLock", "WALWrite", "wal"),
        ("active", "Lock", "transactionid", "lock"),
        ("idle", "Client", "ClientRead", "client"),
        ("active", "Client", "ClientRead", "client"),
        ("idle in transaction", None, None, "client"),
        ("active", "LWLock", "BufferContent", "other"),
        ("active", "IO", "DataFileRead", "other"),
    ],
)
def test_bench_writers_are_classified_by_what_their_backend_waits_on(
    state, wait_type, wait_event, expected
):
    from benchmarks.ledger import writer_state

    assert writer_state(state, wait_type, wait_event) == expected


def test_the_sealer_is_scheduled_by_celery_beat():
    from django.conf import settings

    from config.celery import app

    schedule = settings.CELERY_BEAT_SCHEDULE
    assert schedule["ledger-seal"]["task"] == "ledger.seal"
    assert schedule["ledger-seal"]["schedule"] <= 10
    assert schedule["ledger-verify"]["task"] == "ledger.verify"
    app.loader.import_default_modules()
    assert {"ledger.seal", "ledger.verify"} <= set(app.tasks)


def test_seal_task_seals():
    from ledger.models import Seal
    from ledger.tasks import ledger_seal, ledger_verify

    transaction_post(postings=[p("world", "a", 1)])
    assert ledger_seal.apply().get() == 1
    assert Seal.objects.count() == 1
    assert ledger_verify.apply().get() is True
