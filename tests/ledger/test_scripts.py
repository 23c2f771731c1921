"""Numscript through the ledger: transaction_post(script=...), the API's script body, and
`manage.py numscript run FILE` against the database."""

import threading

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connections

from ledger.errors import InsufficientFunds, ReferenceConflict, ScriptError
from ledger.models import AccountMetadataChange, Transaction
from ledger.selectors import account_metadata_get, balance_get
from ledger.services import account_metadata_set, transaction_post
from ledger.services.scripts import ledger_asset
from tests.ledger.helpers import p, table_counts

SPLIT = """\
vars {
  account $order
  account $restaurant
  account $rider
  monetary $delivery_fee
  portion $commission = meta($restaurant, "commission")
}
send $delivery_fee ( source = $order destination = $rider )
send [USD/2 *] (
  source = $order
  destination = {
    $commission to @platform:fees
    remaining to $restaurant
  }
)
set_tx_meta("kind", "split")
set_account_meta($restaurant, "last_order", $order)
"""
VARS = {
    "order": "orders:1",
    "restaurant": "restaurants:17",
    "rider": "riders:9",
    "delivery_fee": "USD/2 500",
}


@pytest.fixture
def funded(write_path) -> None:
    transaction_post(
        postings=[p("stripe:balance", "orders:1", 5500)], overdraft={"stripe:balance": None}
    )
    account_metadata_set(address="restaurants:17", metadata={"commission": "15%"})


@pytest.mark.django_db
def test_script_post_runs_against_locked_balances_and_posts(funded):
    # when
    result = transaction_post(script=SPLIT, vars=VARS, metadata={"order_id": "1"})

    # then
    assert result.replayed is False
    assert result.postings == (
        p("orders:1", "riders:9", 500),
        p("orders:1", "platform:fees", 750),
        p("orders:1", "restaurants:17", 4250),
    )
    tx = Transaction.objects.get(pk=result.transaction.pk)
    assert tx.metadata == {"order_id": "1", "kind": "split"}
    assert balance_get(address="orders:1", asset="USD/2") == 0
    assert balance_get(address="restaurants:17", asset="USD/2") == 4250
    assert balance_get(address="platform:fees", asset="USD/2") == 750
    assert account_metadata_get(address="restaurants:17") == {
        "commission": "15%",
        "last_order": "orders:1",
    }
    change = AccountMetadataChange.objects.get(key="last_order")
    assert change.transaction_id == tx.pk
    assert result.account_meta == {"restaurants:17": {"last_order": "orders:1"}}


@pytest.mark.django_db
def test_script_dry_run_writes_nothing(funded):
    before = table_counts()
    result = transaction_post(script=SPLIT, vars=VARS, dry_run=True)
    assert result.dry_run is True
    assert result.transaction.pk is None
    assert len(result.postings) == 3
    assert table_counts() == before
    assert account_metadata_get(address="restaurants:17") == {"commission": "15%"}


@pytest.mark.django_db
def test_script_missing_funds_is_insufficient_funds(funded):
    before = table_counts()
    with pytest.raises(InsufficientFunds) as excinfo:
        transaction_post(script=SPLIT, vars=VARS | {"delivery_fee": "USD/2 9000"})
    assert (excinfo.value.account, excinfo.value.needed, excinfo.value.available) == (
        "orders:1",
        9000,
        5500,
    )
    assert excinfo.value.extra["line"] == 8
    assert table_counts() == before


@pytest.mark.django_db
def test_script_errors_are_script_errors_with_a_position(write_path):
    with pytest.raises(ScriptError) as excinfo:
        transaction_post(script="send [USD/2 1] (source = @world", vars={})
    assert excinfo.value.code == "script_error"
    assert excinfo.value.extra["line"] == 1
    with pytest.raises(ScriptError) as excinfo:
        transaction_post(script=SPLIT, vars={"order": "orders:1"})
    assert excinfo.value.extra["error"] in {"MissingVariable", "UnboundVariable"}


@pytest.mark.django_db
def test_script_reference_replay_and_conflict(funded):
    first = transaction_post(script=SPLIT, vars=VARS, reference="split:1")
    again = transaction_post(script=SPLIT, vars=VARS, reference="split:1")
    assert again.replayed is True
    assert again.transaction.pk == first.transaction.pk
    assert again.postings == first.postings
    with pytest.raises(ReferenceConflict):
        transaction_post(script=SPLIT, vars=VARS | {"rider": "riders:1"}, reference="split:1")
    assert Transaction.objects.filter(reference="split:1").count() == 1


@pytest.mark.django_db
def test_colored_balances_are_separate_ledger_assets(write_path):
    # given: red coins at the source
    assert ledger_asset("COIN", "RED") == "COIN_RED"
    assert ledger_asset("USD/2", "RED") == "USD_RED/2"
    transaction_post(postings=[p("world", "src", 30, "COIN_RED"), p("world", "src", 5, "COIN")])

    # when
    result = transaction_post(
        script='send [COIN 32] (source = { @src \\ "RED" @src } destination = @dest)',
        feature_flags=["experimental-asset-colors"],
    )

    # then
    assert result.postings == (p("src", "dest", 30, "COIN_RED"), p("src", "dest", 2, "COIN"))
    assert balance_get(address="dest", asset="COIN_RED") == 30
    assert balance_get(address="src", asset="COIN") == 3


@pytest.mark.django_db
def test_api_accepts_a_script_body(staff_client, funded):
    response = staff_client.post(
        "/api/v1/ledger/transactions/",
        {"script": {"plain": SPLIT, "vars": VARS}, "reference": "split:api"},
        format="json",
    )
    assert response.status_code == 201
    body = response.json()
    assert [x["amount"] for x in body["transaction"]["postings"]] == [500, 750, 4250]
    assert body["transaction"]["metadata"] == {"kind": "split"}
    bad = staff_client.post(
        "/api/v1/ledger/transactions/", {"script": {"plain": "send ("}}, format="json"
    )
    assert bad.status_code == 400
    assert bad.json()["code"] == "script_error"


@pytest.mark.django_db
def test_numscript_run_command_posts_to_the_ledger(funded, tmp_path, capsys):
    # given
    script = tmp_path / "payout.num"
    script.write_text(
        "send [USD/2 100] (source = @orders:1 destination = @restaurants:17:payouts:1)\n"
    )

    # when
    call_command("numscript", "run", str(script))

    # then
    assert balance_get(address="restaurants:17:payouts:1", asset="USD/2") == 100
    assert "restaurants:17:payouts:1" in capsys.readouterr().out
    call_command("numscript", "run", str(script), "--dry-run")
    assert balance_get(address="restaurants:17:payouts:1", asset="USD/2") == 100
    script.write_text("send [USD/2 999999] (source = @orders:1 destination = @x)\n")
    with pytest.raises(CommandError):
        call_command("numscript", "run", str(script))
    assert ": error: " in capsys.readouterr().err
    assert balance_get(address="orders:1", asset="USD/2") == 5400


@pytest.mark.django_db(transaction=True)
def test_concurrent_scripts_cannot_spend_the_same_funds(write_path):
    # given: 100 in an account, 6 scripts each sending 40 from it
    transaction_post(postings=[p("world", "wallets:1", 100)])
    outcomes = []
    lock = threading.Lock()
    barrier = threading.Barrier(6)

    def work() -> None:
        try:
            barrier.wait()
            try:
                transaction_post(script="send [USD/2 40] (source = @wallets:1 destination = @shop)")
                outcome = "ok"
            except InsufficientFunds:
                outcome = "refused"
            with lock:
                outcomes.append(outcome)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=work) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)

    # then
    assert sorted(outcomes) == ["ok", "ok"] + ["refused"] * 4
    assert balance_get(address="wallets:1", asset="USD/2") == 20
    assert balance_get(address="shop", asset="USD/2") == 80
