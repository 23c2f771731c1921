"""API chaos: 500 before acting, timeouts with the operation still done, 500 after acting."""

from __future__ import annotations

import time
from typing import Any

import pytest
import requests
import stripe

from stripe_emulator import ChaosConfig, EmulatorServer

from .conftest import make_client


@pytest.fixture
def funded(emulator: EmulatorServer) -> tuple[stripe.StripeClient, str]:
    client = make_client(emulator)
    client.v1.topups.create(params={"amount": 100_000, "currency": "usd"})
    account = client.v1.accounts.create(params={"type": "express"})
    return client, account.id


def _transfer_params(destination: str, payout_id: str) -> Any:
    return {
        "amount": 1000,
        "currency": "usd",
        "destination": destination,
        "metadata": {"payout_id": payout_id},
    }


def test_api_error_rate_fails_before_doing_anything(
    emulator: EmulatorServer, funded: tuple[stripe.StripeClient, str]
) -> None:
    # given
    client, destination = funded
    emulator.set_chaos(api_error_rate=1.0, api_paths=("/v1/transfers",))

    # when
    with pytest.raises(stripe.APIError) as caught:
        client.v1.transfers.create(
            params=_transfer_params(destination, "po-1"), options={"idempotency_key": "tr-po-1"}
        )

    # then: nothing happened and nothing was saved under the key
    assert caught.value.http_status == 500
    assert emulator.transfer_counts() == {}
    emulator.set_chaos(api_error_rate=0.0)
    retried = client.v1.transfers.create(
        params=_transfer_params(destination, "po-1"), options={"idempotency_key": "tr-po-1"}
    )
    assert retried.metadata["payout_id"] == "po-1"
    assert emulator.transfer_counts() == {"po-1": 1}


def test_sdk_retries_recover_from_api_errors_before_processing(
    emulator: EmulatorServer, funded: tuple[stripe.StripeClient, str]
) -> None:
    # given: every other call to /v1/transfers fails first (seeded), the SDK retries twice
    _, destination = funded
    emulator.set_chaos(seed=1, api_error_rate=0.5, api_paths=("/v1/transfers",))
    retrying = make_client(emulator, retries=2)

    # when
    successes = 0
    for i in range(4):
        try:
            retrying.v1.transfers.create(params=_transfer_params(destination, f"po-{i}"))
            successes += 1
        except stripe.APIError:
            pass

    # then: never a duplicate, whatever the outcome
    assert all(count == 1 for count in emulator.transfer_counts().values())
    assert len(emulator.transfer_counts()) == successes
    assert emulator.stats()["api"]["chaos_errors_before"] >= 1


def test_timeout_chaos_times_out_the_client_but_the_transfer_exists(
    emulator: EmulatorServer, funded: tuple[stripe.StripeClient, str]
) -> None:
    # given
    _, destination = funded
    emulator.set_chaos(api_timeout_rate=1.0, api_timeout_seconds=2.0, api_paths=("/v1/transfers",))
    impatient = make_client(emulator, timeout=0.3)

    # when
    with pytest.raises(stripe.APIConnectionError):
        impatient.v1.transfers.create(
            params=_transfer_params(destination, "po-7"), options={"idempotency_key": "tr-po-7"}
        )

    # then: while the request is still running, the same key is "in use" (409)
    with pytest.raises(stripe.APIError) as in_use:
        make_client(emulator).v1.transfers.create(
            params=_transfer_params(destination, "po-7"), options={"idempotency_key": "tr-po-7"}
        )
    assert in_use.value.http_status == 409
    assert in_use.value.error is not None
    assert in_use.value.error.code == "idempotency_key_in_use"
    deadline = time.monotonic() + 5
    while emulator.transfer_counts().get("po-7") is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert emulator.transfer_counts() == {"po-7": 1}
    # the outcome is resolved by looking the object up, or by replaying the same key
    emulator.set_chaos(api_timeout_rate=0.0)
    client = make_client(emulator)
    found = [
        t
        for t in client.v1.transfers.list(params={"destination": destination}).auto_paging_iter()
        if t.metadata["payout_id"] == "po-7"
    ]
    replayed = client.v1.transfers.create(
        params=_transfer_params(destination, "po-7"), options={"idempotency_key": "tr-po-7"}
    )
    assert [t.id for t in found] == [replayed.id]
    assert emulator.transfer_counts() == {"po-7": 1}


def test_error_after_rate_performs_then_answers_500_and_replays_it(
    emulator: EmulatorServer, funded: tuple[stripe.StripeClient, str]
) -> None:
    # given
    client, destination = funded
    emulator.set_chaos(api_error_after_rate=1.0, api_paths=("/v1/transfers",))

    # when
    with pytest.raises(stripe.APIError) as first:
        client.v1.transfers.create(
            params=_transfer_params(destination, "po-3"), options={"idempotency_key": "tr-po-3"}
        )

    # then
    assert first.value.http_status == 500
    assert emulator.transfer_counts() == {"po-3": 1}
    emulator.set_chaos(api_error_after_rate=0.0)
    with pytest.raises(stripe.APIError) as replay:
        client.v1.transfers.create(
            params=_transfer_params(destination, "po-3"), options={"idempotency_key": "tr-po-3"}
        )
    assert replay.value.headers is not None
    assert replay.value.headers["Idempotent-Replayed"] == "true"
    assert emulator.transfer_counts() == {"po-3": 1}


def test_seeded_api_chaos_is_reproducible() -> None:
    def run() -> list[bool]:
        server = EmulatorServer(port=0, chaos=ChaosConfig(seed=99, api_error_rate=0.3)).start()
        try:
            client = make_client(server)
            outcomes = []
            for _ in range(30):
                try:
                    client.v1.balance.retrieve()
                    outcomes.append(True)
                except stripe.APIError:
                    outcomes.append(False)
            return outcomes
        finally:
            server.stop()

    first, second = run(), run()
    assert first == second
    assert 3 <= first.count(False) <= 20


def test_control_endpoints(emulator: EmulatorServer) -> None:
    def call(method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        response = requests.request(method, emulator.url + path, json=body, timeout=5)
        response.raise_for_status()
        return response.json()

    assert call("GET", "/_emulator/health") == {"ok": True}
    changed = call("POST", "/_emulator/chaos", {"drop_rate": 0.25, "shuffle": True})
    assert (changed["drop_rate"], changed["shuffle"]) == (0.25, True)
    assert emulator.chaos.drop_rate == 0.25
    make_client(emulator).v1.transfers.list()
    stats = call("GET", "/_emulator/stats")
    assert stats["api"]["requests"] == 1
    assert stats["transfers"] == {"total": 0, "by_payout_id": {}}
    assert call("POST", "/_emulator/flush", {"timeout": 1}) == {"drained": True}
    assert call("POST", "/_emulator/redeliver_dropped") == {"redelivered": 0}
    with pytest.raises(requests.HTTPError) as bad:
        call("POST", "/_emulator/chaos", {"drop_rate": 2})
    assert bad.value.response.status_code == 400


def test_rate_limit_chaos_answers_429_should_retry_and_saves_nothing(
    emulator: EmulatorServer, funded: tuple[stripe.StripeClient, str]
) -> None:
    # given
    client, destination = funded
    emulator.set_chaos(api_rate_limit_rate=1.0, api_paths=("/v1/transfers",))

    # when
    with pytest.raises(stripe.RateLimitError) as caught:
        client.v1.transfers.create(
            params=_transfer_params(destination, "po-9"), options={"idempotency_key": "tr-po-9"}
        )

    # then: 429 with Stripe-Should-Retry, nothing done; the same key works once it passes
    assert caught.value.http_status == 429
    assert caught.value.headers is not None
    assert caught.value.headers.get("Stripe-Should-Retry") == "true"
    assert emulator.transfer_counts() == {}
    emulator.set_chaos(api_rate_limit_rate=0.0)
    client.v1.transfers.create(
        params=_transfer_params(destination, "po-9"), options={"idempotency_key": "tr-po-9"}
    )
    assert emulator.transfer_counts() == {"po-9": 1}


def test_idempotency_keys_are_pruned_after_the_retention(
    emulator: EmulatorServer, funded: tuple[stripe.StripeClient, str]
) -> None:
    # given: a transfer made with a key
    client, destination = funded
    options: Any = {"idempotency_key": "tr-po-7"}
    first = client.v1.transfers.create(
        params=_transfer_params(destination, "po-7"), options=options
    )

    # when: replayed within 24 h, then again after
    emulator.advance_clock(23 * 3600)
    replayed = client.v1.transfers.create(
        params=_transfer_params(destination, "po-7"), options=options
    )
    emulator.advance_clock(3600)
    after = client.v1.transfers.create(
        params=_transfer_params(destination, "po-7"), options=options
    )

    # then: the replay is the same transfer; after the retention the key is new again
    assert replayed.id == first.id
    assert after.id != first.id
    assert emulator.transfer_counts() == {"po-7": 2}
    assert emulator.stats()["api"]["idempotency_keys_pruned"] == 1


def test_a_top_up_can_be_reversed_through_the_test_helper(
    emulator: EmulatorServer, funded: tuple[stripe.StripeClient, str]
) -> None:
    # given
    client, _ = funded
    topup = client.v1.topups.create(params={"amount": 5_000, "currency": "usd"})

    # when
    status, reversed_topup = emulator.request("POST", f"/v1/test_helpers/topups/{topup.id}/reverse")

    # then
    assert (status, reversed_topup["status"]) == (200, "reversed")
    txns = [t for t in emulator.state.objects("balance_transaction", "") if t["source"] == topup.id]
    assert [(t["type"], t["amount"]) for t in txns] == [
        ("topup", 5_000),
        ("topup_reversal", -5_000),
    ]
    types = [e["type"] for e in emulator.state.objects("event", "")]
    assert "topup.reversed" in types
    status, _ = emulator.request("POST", f"/v1/test_helpers/topups/{topup.id}/reverse")
    assert status == 400
