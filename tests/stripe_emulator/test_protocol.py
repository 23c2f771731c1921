"""Auth, error JSON and its mapping to stripe exceptions, idempotency, Stripe-Account."""

from __future__ import annotations

from typing import Any, cast

import pytest
import requests
import stripe

from stripe_emulator import EmulatorServer

from .conftest import pay


def _raw(emulator: EmulatorServer, path: str, headers: dict[str, str]) -> tuple[int, Any]:
    response = requests.get(emulator.url + path, headers=headers, timeout=5)
    return response.status_code, response.json()


def test_missing_api_key_is_401_stripe_error_json(emulator: EmulatorServer) -> None:
    status, body = _raw(emulator, "/v1/balance", {})
    assert status == 401
    assert body["error"]["type"] == "invalid_request_error"
    assert "did not provide an API key" in body["error"]["message"]


def test_bad_api_key_maps_to_authentication_error(emulator: EmulatorServer) -> None:
    client = stripe.StripeClient(
        "sk_live_nope_1234",
        base_addresses={"api": emulator.url},
        max_network_retries=0,
        http_client=stripe.RequestsClient(timeout=5),
    )
    with pytest.raises(stripe.AuthenticationError) as caught:
        client.v1.balance.retrieve()
    assert caught.value.http_status == 401


def test_unknown_object_is_404_resource_missing(client: stripe.StripeClient) -> None:
    with pytest.raises(stripe.InvalidRequestError) as caught:
        client.v1.charges.retrieve("ch_missing")
    error = caught.value
    assert error.http_status == 404
    assert error.code == "resource_missing"
    assert error.param == "id"
    assert str(error.user_message) == "No such charge: 'ch_missing'"
    body: Any = error.json_body
    assert body["error"]["doc_url"].endswith("resource-missing")


def test_missing_and_unknown_params_are_400(client: stripe.StripeClient) -> None:
    with pytest.raises(stripe.InvalidRequestError) as caught:
        client.v1.payment_intents.create(params=cast(Any, {"currency": "usd"}))
    assert (caught.value.http_status, caught.value.param, caught.value.code) == (
        400,
        "amount",
        "parameter_missing",
    )
    with pytest.raises(stripe.InvalidRequestError) as unknown:
        unknown_param: Any = {"amount": 1, "currency": "usd", "destination": "x", "colour": "red"}
        client.v1.transfers.create(params=unknown_param)
    assert unknown.value.code == "parameter_unknown"


def test_unrecognized_url_is_404(emulator: EmulatorServer) -> None:
    status, body = _raw(emulator, "/v1/nothing_here", {"Authorization": "Bearer sk_test_x"})
    assert status == 404
    assert "Unrecognized request URL" in body["error"]["message"]


def test_idempotent_replay_returns_the_first_response(
    client: stripe.StripeClient, emulator: EmulatorServer
) -> None:
    # given
    params = {"amount": 1000, "currency": "usd", "metadata": {"payout_id": "p-9"}}

    # when
    first = client.v1.topups.create(params=params, options={"idempotency_key": "topup-p-9"})  # type: ignore[arg-type]
    second = client.v1.topups.create(params=params, options={"idempotency_key": "topup-p-9"})  # type: ignore[arg-type]

    # then
    assert first.id == second.id
    assert emulator.state.count("topup") == 1
    assert second.last_response is not None
    assert second.last_response.headers["Idempotent-Replayed"] == "true"
    assert "Idempotent-Replayed" not in first.last_response.headers  # type: ignore[union-attr]
    assert emulator.stats()["api"]["idempotent_replays"] == 1


def test_same_key_with_different_params_is_an_idempotency_error(
    client: stripe.StripeClient, emulator: EmulatorServer
) -> None:
    client.v1.topups.create(
        params={"amount": 1000, "currency": "usd"}, options={"idempotency_key": "k1"}
    )
    with pytest.raises(stripe.IdempotencyError) as caught:
        client.v1.topups.create(
            params={"amount": 1001, "currency": "usd"}, options={"idempotency_key": "k1"}
        )
    assert caught.value.http_status == 400
    assert caught.value.error is not None
    assert caught.value.error.type == "idempotency_error"
    assert emulator.state.count("topup") == 1


def test_idempotency_keys_are_scoped_per_account(client: stripe.StripeClient) -> None:
    account = client.v1.accounts.create(params={"type": "express"})
    client.v1.topups.create(
        params={"amount": 1000, "currency": "usd"}, options={"idempotency_key": "same"}
    )
    other = client.v1.topups.create(
        params={"amount": 2000, "currency": "usd"},
        options={"idempotency_key": "same", "stripe_account": account.id},
    )
    assert other.amount == 2000


def test_card_errors_are_replayed_but_validation_errors_are_not(
    client: stripe.StripeClient, emulator: EmulatorServer
) -> None:
    params = {
        "amount": 1000,
        "currency": "usd",
        "payment_method": "pm_card_chargeDeclined",
        "confirm": True,
    }
    with pytest.raises(stripe.CardError) as first:
        client.v1.payment_intents.create(params=params, options={"idempotency_key": "decl"})  # type: ignore[arg-type]
    with pytest.raises(stripe.CardError) as replay:
        client.v1.payment_intents.create(params=params, options={"idempotency_key": "decl"})  # type: ignore[arg-type]
    assert replay.value.headers is not None
    assert replay.value.headers["Idempotent-Replayed"] == "true"
    assert first.value.error.payment_intent.id == replay.value.error.payment_intent.id  # type: ignore[union-attr]
    assert emulator.state.count("payment_intent") == 1

    with pytest.raises(stripe.InvalidRequestError):
        no_amount: Any = {"currency": "usd"}
        client.v1.topups.create(params=no_amount, options={"idempotency_key": "val"})
    fixed = client.v1.topups.create(
        params={"currency": "usd", "amount": 5}, options={"idempotency_key": "val"}
    )
    assert fixed.amount == 5


def test_unknown_stripe_account_header_is_refused(client: stripe.StripeClient) -> None:
    with pytest.raises(stripe.PermissionError) as caught:
        client.v1.balance.retrieve(options={"stripe_account": "acct_doesnotexist00"})
    assert caught.value.http_status == 403


def test_retrieve_is_scoped_to_the_account(client: stripe.StripeClient) -> None:
    account = client.v1.accounts.create(params={"type": "custom"})
    pi = pay(client)
    with pytest.raises(stripe.InvalidRequestError):
        client.v1.payment_intents.retrieve(pi.id, options={"stripe_account": account.id})


def test_in_process_request_helper(emulator: EmulatorServer) -> None:
    status, body = emulator.request("POST", "/v1/customers", {"metadata": {"a": "1"}})
    assert status == 200
    assert body["metadata"] == {"a": "1"}
    status, body = emulator.request("GET", f"/v1/customers/{body['id']}")
    assert status == 200
