"""Properties: money adds up whatever the sequence of operations, and concurrent retries
with one idempotency key create exactly one object."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import stripe
from hypothesis import given, settings
from hypothesis import strategies as st

from stripe_emulator import EmulatorServer

from .conftest import make_client

_operations = st.lists(
    st.one_of(
        st.tuples(st.just("charge"), st.integers(50, 20_000)),
        st.tuples(st.just("refund"), st.integers(1, 20_000)),
        st.tuples(st.just("transfer"), st.integers(1, 10_000)),
        st.tuples(st.just("reverse"), st.integers(1, 10_000)),
        st.tuples(st.just("payout"), st.integers(1, 10_000)),
        st.tuples(st.just("dispute"), st.integers(1, 20_000)),
    ),
    max_size=25,
)


@settings(max_examples=40, deadline=None)
@given(_operations)
def test_balances_always_equal_the_sum_of_balance_transactions(ops: list[tuple[str, int]]) -> None:
    # given: an in-process emulator (no HTTP needed for a property over the state)
    server = EmulatorServer(port=0)
    _, account = server.request("POST", "/v1/accounts", {"type": "express"})
    charges: list[str] = []
    transfers: list[str] = []

    # when: any sequence of operations, some of which Stripe refuses
    for name, amount in ops:
        if name == "charge":
            status, pi = server.request(
                "POST",
                "/v1/payment_intents",
                {
                    "amount": amount,
                    "currency": "usd",
                    "payment_method": "pm_card_visa",
                    "confirm": True,
                },
            )
            assert status == 200
            charges.append(pi["latest_charge"])
        elif name == "refund" and charges:
            server.request(
                "POST", "/v1/refunds", {"charge": charges[amount % len(charges)], "amount": amount}
            )
        elif name == "transfer":
            status, transfer = server.request(
                "POST",
                "/v1/transfers",
                {"amount": amount, "currency": "usd", "destination": account["id"]},
            )
            if status == 200:
                transfers.append(transfer["id"])
            else:
                assert transfer["error"]["code"] == "balance_insufficient"
        elif name == "reverse" and transfers:
            server.request(
                "POST",
                f"/v1/transfers/{transfers[amount % len(transfers)]}/reversals",
                {"amount": amount},
            )
        elif name == "payout":
            server.request(
                "POST", "/v1/payouts", {"amount": amount, "currency": "usd"}, account=account["id"]
            )
        elif name == "dispute" and charges:
            server.request(
                "POST", f"/v1/test_helpers/charges/{charges[amount % len(charges)]}/dispute", {}
            )

    # then: once Stripe's own work is done (asynchronous captures attached)
    server.settle(5)
    for scope in ("", account["id"]):
        txns = server.state.objects("balance_transaction", scope)
        _, balance = server.request("GET", "/v1/balance", account=scope or None)
        total = balance["available"][0]["amount"] + balance["pending"][0]["amount"]
        assert total == sum(t["net"] for t in txns)
        assert all(t["net"] == t["amount"] - t["fee"] for t in txns)
    for charge in server.state.objects("charge", ""):
        refunded = sum(
            r["amount"]
            for r in server.state.objects("refund", "")
            if r["charge"] == charge["id"] and r["status"] == "succeeded"
        )
        assert refunded == charge["amount_refunded"] <= charge["amount"]
    for transfer in server.state.objects("transfer", ""):
        assert 0 <= transfer["amount_reversed"] <= transfer["amount"]
    # the connected account never goes below zero: reversals and payouts need its balance
    _, connected = server.request("GET", "/v1/balance", account=account["id"])
    assert connected["available"][0]["amount"] >= 0


def test_concurrent_retries_with_one_key_create_exactly_one_transfer(
    emulator: EmulatorServer,
) -> None:
    # given
    client = make_client(emulator)
    client.v1.topups.create(params={"amount": 10_000, "currency": "usd"})
    account = client.v1.accounts.create(params={"type": "express"})
    params: Any = {
        "amount": 100,
        "currency": "usd",
        "destination": account.id,
        "metadata": {"payout_id": "p-42"},
    }
    results: list[str] = []
    errors: list[int | None] = []
    lock = threading.Lock()

    def attempt() -> None:
        own = make_client(emulator)
        try:
            transfer = own.v1.transfers.create(
                params=params, options={"idempotency_key": "payout:p-42"}
            )
            with lock:
                results.append(transfer.id)
        except stripe.APIError as error:  # 409: the same key is being processed right now
            with lock:
                errors.append(error.http_status)

    # when
    threads = [threading.Thread(target=attempt) for _ in range(12)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)

    # then
    assert emulator.transfer_counts() == {"p-42": 1}
    assert len(set(results)) == 1
    assert set(errors) <= {409}
    assert len(results) + len(errors) == 12


def test_the_package_does_not_import_django() -> None:
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    code = (
        "import sys, stripe_emulator, stripe_emulator.__main__, stripe_emulator.bench;"
        " assert 'django' not in sys.modules, 'django imported'"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=30
    )
    assert result.returncode == 0, result.stderr
