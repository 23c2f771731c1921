"""SQLite persistence, reset, form decoding and the command line."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import requests
import stripe
from hypothesis import given
from hypothesis import strategies as st

from stripe_emulator import EmulatorServer
from stripe_emulator.forms import decode, encode

from .conftest import make_client, pay


def test_sqlite_database_keeps_state_across_restarts(tmp_path: Path) -> None:
    # given
    db = str(tmp_path / "emulator.sqlite3")
    server = EmulatorServer(port=0, db_path=db).start()
    client = make_client(server)
    account = client.v1.accounts.create(params={"type": "express"})
    pi = pay(client, amount=5000)
    transfer = client.v1.transfers.create(
        params={
            "amount": 1000,
            "currency": "usd",
            "destination": account.id,
            "metadata": {"payout_id": "p-1"},
        },
        options={"idempotency_key": "tr-1"},
    )
    balance = client.v1.balance.retrieve().available[0].amount
    server.stop()

    # when
    restarted = EmulatorServer(port=0, db_path=db).start()
    try:
        client = make_client(restarted)

        # then
        assert client.v1.payment_intents.retrieve(pi.id).status == "succeeded"
        assert client.v1.balance.retrieve().available[0].amount == balance
        assert [
            t.id for t in client.v1.transfers.list(params={"destination": account.id}).data
        ] == [transfer.id]
        replay = client.v1.transfers.create(
            params={
                "amount": 1000,
                "currency": "usd",
                "destination": account.id,
                "metadata": {"payout_id": "p-1"},
            },
            options={"idempotency_key": "tr-1"},
        )
        assert replay.id == transfer.id
        assert restarted.transfer_counts() == {"p-1": 1}
        platform_txns = client.v1.balance_transactions.list(params={"limit": 100}).data
        assert [t.type for t in platform_txns] == ["transfer", "charge"]
        connected_txns = client.v1.balance_transactions.list(
            options={"stripe_account": account.id}
        ).data
        assert [(t.type, t.amount) for t in connected_txns] == [("payment", 1000)]
        second = client.v1.transfers.create(
            params={"amount": 500, "currency": "usd", "destination": account.id}
        )
        listed = [t.id for t in client.v1.transfers.list().data]
        assert listed == [second.id, transfer.id]
    finally:
        restarted.stop()


def test_reset_forgets_everything(emulator: EmulatorServer) -> None:
    client = make_client(emulator)
    pay(client)
    emulator.reset()  # also forgets the pending attachment of the capture's balance txn
    emulator.settle(1)
    assert emulator.state.counts()["payment_intent"] == 0
    assert client.v1.balance.retrieve().available[0].amount == 0


def test_decode_nested_forms() -> None:
    pairs = [
        ("amount", "100"),
        ("metadata[order_id]", "42"),
        ("metadata[empty]", ""),
        ("expand[0]", "data.source"),
        ("expand[1]", "latest_charge"),
        ("types[]", "a"),
        ("types[]", "b"),
        ("created[gte]", "10"),
        ("items[0][price]", "p1"),
        ("items[1][price]", "p2"),
        ("weird]key", "x"),
    ]
    assert decode(pairs) == {
        "amount": "100",
        "metadata": {"order_id": "42", "empty": ""},
        "expand": ["data.source", "latest_charge"],
        "types": ["a", "b"],
        "created": {"gte": "10"},
        "items": [{"price": "p1"}, {"price": "p2"}],
        "weird]key": "x",
    }


_keys = st.text(alphabet="abcdefghij_", min_size=1, max_size=6)
_values = st.text(alphabet="abc xyz019-_.", max_size=8)
_params = st.dictionaries(
    _keys,
    st.one_of(
        _values,
        st.dictionaries(_keys, _values, min_size=1, max_size=3),
        st.lists(_values, min_size=1, max_size=3),
    ),
    max_size=5,
)


@given(_params)
def test_encode_then_decode_round_trips(params: dict[str, object]) -> None:
    assert decode(encode(params)) == params


def test_command_line_serves_and_prints_its_url(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "stripe_emulator",
            "--port",
            "0",
            "--db",
            str(tmp_path / "cli.db"),
            "--chaos-seed",
            "3",
            "--chaos-duplicate-rate",
            "0.1",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env=env,
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        assert line.startswith("stripe emulator listening on http://127.0.0.1:")
        url = line.split()[4]
        chaos = requests.get(url + "/_emulator/chaos", timeout=5).json()
        assert (chaos["seed"], chaos["duplicate_rate"]) == (3, 0.1)
        client = stripe.StripeClient(
            "sk_test_cli",
            base_addresses={"api": url},
            max_network_retries=0,
            http_client=stripe.RequestsClient(timeout=5),
        )
        assert client.v1.customers.create(params={"name": "cli"}).name == "cli"
    finally:
        process.terminate()
        process.wait(10)


def test_command_line_rejects_bad_chaos() -> None:
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    result = subprocess.run(
        [sys.executable, "-m", "stripe_emulator", "--port", "0", "--chaos-drop-rate", "1.5"],
        capture_output=True,
        text=True,
        env=env,
        timeout=30,
    )
    assert result.returncode == 2
    assert "drop_rate must be between 0 and 1" in result.stderr
