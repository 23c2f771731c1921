"""The Stripe seam: every method over mocked HTTP, idempotency keys, errors, amounts, guard."""

from __future__ import annotations

import json
import logging
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
import responses
import stripe
from django.db import transaction

from stripe_gateway.client import (
    StripeGateway,
    from_stripe_amount,
    get_gateway,
    open_atomic_depth,
    to_stripe_amount,
)
from stripe_gateway.errors import (
    AssetNotSupported,
    CardDeclined,
    InvalidRequest,
    OutcomeUnknown,
    PaymentProviderError,
    ProviderConfigurationError,
    ProviderObjectNotFound,
    ProviderUnavailable,
    StripeCallInTransaction,
)
from tests.marketplace.conftest import API_BASE
from tests.marketplace.helpers import stripe_object


def form(call: Any) -> dict[str, list[str]]:
    return parse_qs(call.request.body or "")


def query(call: Any) -> dict[str, list[str]]:
    return parse_qs(urlsplit(call.request.url).query)


# --- amounts --------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("amount", "asset", "expected"),
    [
        (1234, "USD/2", (1234, "usd")),
        (999, "EUR/2", (999, "eur")),
        (500, "JPY", (500, "jpy")),
        (1000, "KWD/3", (1000, "kwd")),
        (100, "ISK/2", (100, "isk")),  # two-decimal in the API (special case)
        (0, "USD/2", (0, "usd")),
    ],
)
def test_to_stripe_amount(amount: int, asset: str, expected: tuple[int, str]) -> None:
    assert to_stripe_amount(amount, asset) == expected


@pytest.mark.parametrize(
    "asset", ["USD/3", "USD", "USD/0", "JPY/2", "JPY/0", "KWD/2", "usd/2", "US/2", ""]
)
def test_to_stripe_amount_refuses_a_scale_stripe_does_not_use(asset: str) -> None:
    with pytest.raises(AssetNotSupported) as info:
        to_stripe_amount(100, asset)
    assert info.value.code == "asset_not_supported"


@pytest.mark.parametrize("amount", [12.5, True, "100", None])
def test_to_stripe_amount_refuses_non_int_amounts(amount: Any) -> None:
    with pytest.raises(ValueError):
        to_stripe_amount(amount, "USD/2")


@pytest.mark.parametrize(
    ("amount", "currency", "expected"),
    [
        (1234, "usd", (1234, "USD/2")),
        (1234, "EUR", (1234, "EUR/2")),
        (500, "jpy", (500, "JPY")),
        (1230, "bhd", (1230, "BHD/3")),
        (-250, "usd", (-250, "USD/2")),  # balance transactions can be negative
    ],
)
def test_from_stripe_amount(amount: int, currency: str, expected: tuple[int, str]) -> None:
    assert from_stripe_amount(amount, currency) == expected
    # and back again
    assert to_stripe_amount(*expected) == (amount, currency.lower())


def test_from_stripe_amount_refuses_garbage() -> None:
    with pytest.raises(AssetNotSupported):
        from_stripe_amount(1, "dollars")
    with pytest.raises(ValueError):
        from_stripe_amount(1.0, "usd")  # type: ignore[arg-type]


# --- POSTs: parameters and the Idempotency-Key header -----------------------------------------
def test_payment_intent_create_sends_form_params_and_the_callers_key(
    gateway: StripeGateway, mock_stripe: responses.RequestsMock
) -> None:
    # given
    pi = stripe_object("payment_intent")
    mock_stripe.post(f"{API_BASE}/v1/payment_intents", json=pi)

    # when
    result = gateway.payment_intent_create(
        amount=1099,
        asset="USD/2",
        idempotency_key="payment:order-42",
        metadata={"order_id": 42},
        transfer_group="ORDER_42",
        customer="cus_1",
        payment_method="pm_card_visa",
        confirm=True,
    )

    # then
    assert result == pi
    assert isinstance(result, dict) and isinstance(result["amount_details"], dict)
    call = mock_stripe.calls[0]
    assert call.request.headers["Idempotency-Key"] == "payment:order-42"
    assert call.request.headers["Authorization"] == "Bearer sk_test_marketplace"
    assert form(call) == {
        "amount": ["1099"],
        "currency": ["usd"],
        "capture_method": ["automatic_async"],
        "metadata[order_id]": ["42"],
        "transfer_group": ["ORDER_42"],
        "customer": ["cus_1"],
        "payment_method": ["pm_card_visa"],
        "confirm": ["true"],
    }


def test_payment_intent_confirm(
    gateway: StripeGateway, mock_stripe: responses.RequestsMock
) -> None:
    pi = stripe_object("payment_intent") | {"status": "succeeded"}
    mock_stripe.post(f"{API_BASE}/v1/payment_intents/{pi['id']}/confirm", json=pi)

    result = gateway.payment_intent_confirm(
        payment_intent_id=pi["id"], payment_method="pm_card_visa", idempotency_key="confirm:42"
    )

    assert result["status"] == "succeeded"
    assert mock_stripe.calls[0].request.headers["Idempotency-Key"] == "confirm:42"
    assert form(mock_stripe.calls[0]) == {"payment_method": ["pm_card_visa"]}


def test_refund_create(gateway: StripeGateway, mock_stripe: responses.RequestsMock) -> None:
    refund = stripe_object("refund")
    mock_stripe.post(f"{API_BASE}/v1/refunds", json=refund)

    result = gateway.refund_create(
        charge_id="ch_1",
        amount=100,
        asset="USD/2",
        idempotency_key="refund:7",
        metadata={"refund_id": "7"},
        reason="requested_by_customer",
    )

    assert result["id"] == refund["id"]
    call = mock_stripe.calls[0]
    assert call.request.headers["Idempotency-Key"] == "refund:7"
    assert form(call) == {
        "charge": ["ch_1"],
        "amount": ["100"],
        "metadata[refund_id]": ["7"],
        "reason": ["requested_by_customer"],
    }


def test_refund_create_needs_exactly_one_target(gateway: StripeGateway) -> None:
    with pytest.raises(ValueError):
        gateway.refund_create(amount=1, asset="USD/2", idempotency_key="k", metadata={})
    with pytest.raises(ValueError):
        gateway.refund_create(
            charge_id="ch_1",
            payment_intent_id="pi_1",
            amount=1,
            asset="USD/2",
            idempotency_key="k",
            metadata={},
        )


def test_transfer_create(gateway: StripeGateway, mock_stripe: responses.RequestsMock) -> None:
    transfer = stripe_object("transfer")
    mock_stripe.post(f"{API_BASE}/v1/transfers", json=transfer)

    gateway.transfer_create(
        amount=1100,
        asset="USD/2",
        destination="acct_1PgafTB7WZ01zgkW",
        idempotency_key="transfer:payout-9",
        transfer_group="ORDER_42",
        metadata={"payout_id": "9"},
        source_transaction="ch_test_1",
    )

    call = mock_stripe.calls[0]
    assert call.request.headers["Idempotency-Key"] == "transfer:payout-9"
    assert form(call) == {
        "amount": ["1100"],
        "currency": ["usd"],
        "destination": ["acct_1PgafTB7WZ01zgkW"],
        "transfer_group": ["ORDER_42"],
        "metadata[payout_id]": ["9"],
        "source_transaction": ["ch_test_1"],
    }


def test_account_customer_and_topup_create(
    gateway: StripeGateway, mock_stripe: responses.RequestsMock
) -> None:
    mock_stripe.post(f"{API_BASE}/v1/accounts", json=stripe_object("account"))
    mock_stripe.post(f"{API_BASE}/v1/customers", json={"id": "cus_1", "object": "customer"})
    mock_stripe.post(f"{API_BASE}/v1/topups", json={"id": "tu_1", "object": "topup"})

    gateway.account_create(idempotency_key="account:restaurant-1", email="r@example.com")
    gateway.customer_create(idempotency_key="customer:5", metadata={"customer_id": 5})
    gateway.topup_create(amount=5000, asset="USD/2", idempotency_key="topup:3", description="x")

    keys = [c.request.headers["Idempotency-Key"] for c in mock_stripe.calls]
    assert keys == ["account:restaurant-1", "customer:5", "topup:3"]
    assert form(mock_stripe.calls[0]) == {
        "type": ["express"],
        "email": ["r@example.com"],
        "capabilities[transfers][requested]": ["true"],
    }
    assert form(mock_stripe.calls[1]) == {"metadata[customer_id]": ["5"]}
    assert form(mock_stripe.calls[2]) == {
        "amount": ["5000"],
        "currency": ["usd"],
        "description": ["x"],
    }


@pytest.mark.parametrize("key", ["", "   ", None, "k" * 256])
def test_every_post_requires_a_usable_idempotency_key(gateway: StripeGateway, key: Any) -> None:
    # no HTTP mock: the call must be refused before any request
    with pytest.raises(ValueError):
        gateway.transfer_create(
            amount=1,
            asset="USD/2",
            destination="acct_1",
            idempotency_key=key,
            transfer_group=None,
            metadata={},
        )


@pytest.mark.parametrize("amount", [0, -5, 1.5])
def test_posts_refuse_non_positive_amounts(gateway: StripeGateway, amount: Any) -> None:
    with pytest.raises(ValueError):
        gateway.topup_create(amount=amount, asset="USD/2", idempotency_key="k")


def test_posts_refuse_an_asset_with_the_wrong_scale(gateway: StripeGateway) -> None:
    with pytest.raises(AssetNotSupported):
        gateway.payment_intent_create(amount=100, asset="USD/3", idempotency_key="k", metadata={})


# --- GETs -----------------------------------------------------------------------------------
def test_retrieves(gateway: StripeGateway, mock_stripe: responses.RequestsMock) -> None:
    objects = {
        "payment_intents/pi_1": stripe_object("payment_intent"),
        "charges/ch_1": stripe_object("charge"),
        "refunds/re_1": stripe_object("refund"),
        "disputes/dp_1": stripe_object("dispute"),
        "transfers/tr_1": stripe_object("transfer"),
        "balance_transactions/txn_1": stripe_object("balance_transaction"),
        "balance": stripe_object("balance"),
        "events/evt_1": stripe_object("event"),
        "topups/tu_1": {"id": "tu_1", "object": "topup", "status": "succeeded"},
    }
    for path, body in objects.items():
        mock_stripe.get(f"{API_BASE}/v1/{path}", json=body)

    results = [
        gateway.payment_intent_retrieve("pi_1", expand=("latest_charge",)),
        gateway.charge_retrieve("ch_1"),
        gateway.refund_retrieve("re_1"),
        gateway.dispute_retrieve("dp_1"),
        gateway.transfer_retrieve("tr_1"),
        gateway.balance_transaction_retrieve("txn_1", stripe_account="acct_9"),
        gateway.balance_retrieve(),
        gateway.event_retrieve("evt_1"),
        gateway.topup_retrieve("tu_1"),
    ]

    assert results == list(objects.values())
    calls = mock_stripe.calls
    assert query(calls[0]) == {"expand[0]": ["latest_charge"]}
    assert query(calls[1]) == {"expand[0]": ["balance_transaction"]}
    assert calls[5].request.headers["Stripe-Account"] == "acct_9"
    assert all("Idempotency-Key" not in c.request.headers for c in calls)


def test_balance_transactions_iter_pages_through_every_page(
    gateway: StripeGateway, mock_stripe: responses.RequestsMock
) -> None:
    # given: two pages
    txn = stripe_object("balance_transaction")
    page1 = [txn | {"id": f"txn_{i}"} for i in range(3)]
    page2 = [txn | {"id": "txn_3"}]
    url = f"{API_BASE}/v1/balance_transactions"
    mock_stripe.get(
        url,
        json={"object": "list", "data": page1, "has_more": True, "url": "/v1/balance_transactions"},
    )
    mock_stripe.get(
        url,
        json={
            "object": "list",
            "data": page2,
            "has_more": False,
            "url": "/v1/balance_transactions",
        },
    )

    # when
    ids = [
        t["id"]
        for t in gateway.balance_transactions_iter(created_gte=100, created_lt=200, page_size=3)
    ]

    # then
    assert ids == ["txn_0", "txn_1", "txn_2", "txn_3"]
    first, second = (query(c) for c in mock_stripe.calls)
    assert first == {
        "created[gte]": ["100"],
        "created[lt]": ["200"],
        "limit": ["3"],
        "expand[0]": ["data.source"],
    }
    assert second["starting_after"] == ["txn_2"]


def test_events_iter_filters_by_type_and_delivery(
    gateway: StripeGateway, mock_stripe: responses.RequestsMock
) -> None:
    event = stripe_object("event")
    mock_stripe.get(
        f"{API_BASE}/v1/events",
        json={"object": "list", "data": [event], "has_more": False, "url": "/v1/events"},
    )

    events = list(
        gateway.events_iter(created_gte=1000, types=["charge.refunded"], delivery_success=False)
    )

    assert events == [event]
    assert query(mock_stripe.calls[0]) == {
        "created[gte]": ["1000"],
        "limit": ["100"],
        "types[0]": ["charge.refunded"],
        "delivery_success": ["false"],
    }


def test_transfers_find_filters_on_group_and_metadata(
    gateway: StripeGateway, mock_stripe: responses.RequestsMock
) -> None:
    transfer = stripe_object("transfer")
    data = [
        transfer | {"id": "tr_a", "metadata": {"payout_id": "9"}},
        transfer | {"id": "tr_b", "metadata": {"payout_id": "10"}},
        transfer | {"id": "tr_c", "metadata": {}},
    ]
    mock_stripe.get(
        f"{API_BASE}/v1/transfers",
        json={"object": "list", "data": data, "has_more": False, "url": "/v1/transfers"},
    )

    found = gateway.transfers_find(
        transfer_group="ORDER_42", metadata_key="payout_id", metadata_value="9", created_gte=5
    )

    assert [t["id"] for t in found] == ["tr_a"]
    assert query(mock_stripe.calls[0]) == {
        "limit": ["100"],
        "transfer_group": ["ORDER_42"],
        "created[gte]": ["5"],
    }


def test_transfers_find_needs_a_filter(gateway: StripeGateway) -> None:
    with pytest.raises(ValueError):
        gateway.transfers_find()


# --- error mapping --------------------------------------------------------------------------
def _error(kind: str, code: str | None = None, **more: Any) -> dict[str, Any]:
    return {"error": {"type": kind, "message": f"{kind} happened", "code": code, **more}}


def _post_transfer(gateway: StripeGateway) -> dict[str, Any]:
    return gateway.transfer_create(
        amount=1100,
        asset="USD/2",
        destination="acct_1",
        idempotency_key="transfer:1",
        transfer_group="ORDER_1",
        metadata={},
    )


@pytest.mark.parametrize(
    ("status", "body", "expected", "code", "retryable"),
    [
        (
            402,
            _error("card_error", "card_declined", decline_code="insufficient_funds"),
            CardDeclined,
            "card_declined",
            False,
        ),
        (
            400,
            _error("invalid_request_error", "balance_insufficient", param="amount"),
            InvalidRequest,
            "provider_invalid_request",
            False,
        ),
        (400, _error("idempotency_error"), InvalidRequest, "provider_idempotency_error", False),
        (
            404,
            _error("invalid_request_error", "resource_missing", param="id"),
            ProviderObjectNotFound,
            "provider_object_not_found",
            False,
        ),
        (
            401,
            _error("invalid_request_error"),
            ProviderConfigurationError,
            "provider_misconfigured",
            False,
        ),
        (
            403,
            _error("invalid_request_error"),
            ProviderConfigurationError,
            "provider_misconfigured",
            False,
        ),
        (
            429,
            _error("invalid_request_error", "rate_limit"),
            ProviderUnavailable,
            "provider_unavailable",
            True,
        ),
        (500, _error("api_error"), OutcomeUnknown, "provider_outcome_unknown", True),
        (503, {"not": "json error"}, OutcomeUnknown, "provider_outcome_unknown", True),
        (
            409,
            _error("invalid_request_error", "idempotency_key_in_use"),
            OutcomeUnknown,
            "provider_outcome_unknown",
            True,
        ),
    ],
)
def test_post_errors_map_to_our_errors(
    gateway: StripeGateway,
    mock_stripe: responses.RequestsMock,
    status: int,
    body: dict[str, Any],
    expected: type[PaymentProviderError],
    code: str,
    retryable: bool,
) -> None:
    mock_stripe.post(
        f"{API_BASE}/v1/transfers", json=body, status=status, headers={"Request-Id": "req_1"}
    )

    with pytest.raises(expected) as info:
        _post_transfer(gateway)

    error = info.value
    assert type(error) is expected
    assert error.code == code
    assert error.retryable is retryable
    assert error.operation == "transfer_create"
    assert error.provider_status == status
    assert error.request_id == ("req_1" if "error" in body else None)
    assert not isinstance(error, stripe.StripeError)
    assert isinstance(error.__cause__, stripe.StripeError)


def test_card_declined_and_invalid_request_carry_stripes_details(
    gateway: StripeGateway, mock_stripe: responses.RequestsMock
) -> None:
    mock_stripe.post(
        f"{API_BASE}/v1/payment_intents",
        json=_error(
            "card_error", "card_declined", decline_code="insufficient_funds", param="payment_method"
        ),
        status=402,
    )
    mock_stripe.post(
        f"{API_BASE}/v1/refunds",
        json=_error("invalid_request_error", "charge_already_refunded", param="charge"),
        status=400,
    )

    with pytest.raises(CardDeclined) as declined:
        gateway.payment_intent_create(
            amount=100, asset="USD/2", idempotency_key="p", metadata={}, confirm=True
        )
    with pytest.raises(InvalidRequest) as invalid:
        gateway.refund_create(
            charge_id="ch_1", amount=100, asset="USD/2", idempotency_key="r", metadata={}
        )

    assert declined.value.as_dict() == {
        "code": "card_declined",
        "message": "card_error happened",
        "operation": "payment_intent_create",
        "stripe_code": "card_declined",
        "param": "payment_method",
        "provider_status": 402,
        "decline_code": "insufficient_funds",
    }
    assert invalid.value.stripe_code == "charge_already_refunded"
    assert invalid.value.param == "charge"


@pytest.mark.parametrize("exception", [requests.ConnectionError("reset"), requests.Timeout("slow")])
def test_a_network_failure_on_a_post_is_outcome_unknown(
    gateway: StripeGateway, mock_stripe: responses.RequestsMock, exception: Exception
) -> None:
    mock_stripe.post(f"{API_BASE}/v1/transfers", body=exception)

    with pytest.raises(OutcomeUnknown) as info:
        _post_transfer(gateway)

    assert info.value.retryable is True


@pytest.mark.parametrize(
    ("status", "body"), [(500, _error("api_error")), (None, requests.ConnectionError("reset"))]
)
def test_a_failed_read_is_provider_unavailable_not_outcome_unknown(
    gateway: StripeGateway, mock_stripe: responses.RequestsMock, status: int | None, body: Any
) -> None:
    if status is None:
        mock_stripe.get(f"{API_BASE}/v1/transfers/tr_1", body=body)
    else:
        mock_stripe.get(f"{API_BASE}/v1/transfers/tr_1", json=body, status=status)

    with pytest.raises(ProviderUnavailable):
        gateway.transfer_retrieve("tr_1")


def test_sdk_network_retries_reuse_the_callers_idempotency_key(
    mock_stripe: responses.RequestsMock, monkeypatch: pytest.MonkeyPatch
) -> None:
    # given: a gateway that retries once, and a first attempt that fails with a 500
    monkeypatch.setattr(stripe.HTTPClient, "_sleep_time_seconds", lambda self, n: 0)
    retrying = StripeGateway(
        api_key="sk_test_marketplace",
        api_base=API_BASE,
        max_network_retries=1,
        http_client="requests",  # mocked with `responses`
    )
    mock_stripe.post(f"{API_BASE}/v1/transfers", json=_error("api_error"), status=500)
    mock_stripe.post(f"{API_BASE}/v1/transfers", json=stripe_object("transfer"))

    # when
    result = _post_transfer(retrying)

    # then: two requests, one key
    assert result["id"] == stripe_object("transfer")["id"]
    assert [c.request.headers["Idempotency-Key"] for c in mock_stripe.calls] == ["transfer:1"] * 2


# --- payment intent cancel, transfer reversals, top-ups ----------------------------------
def test_payment_intent_cancel_sends_the_reason_and_the_callers_key(
    gateway: StripeGateway, mock_stripe: responses.RequestsMock
) -> None:
    # given
    canceled = stripe_object("payment_intent") | {
        "status": "canceled",
        "cancellation_reason": "abandoned",
    }
    mock_stripe.post(f"{API_BASE}/v1/payment_intents/{canceled['id']}/cancel", json=canceled)
    mock_stripe.post(f"{API_BASE}/v1/payment_intents/pi_2/cancel", json=canceled)

    # when
    result = gateway.payment_intent_cancel(
        payment_intent_id=canceled["id"], idempotency_key="pi-cancel:42", reason="abandoned"
    )
    gateway.payment_intent_cancel(payment_intent_id="pi_2", idempotency_key="pi-cancel:43")

    # then
    assert result == canceled
    first, second = mock_stripe.calls
    assert first.request.headers["Idempotency-Key"] == "pi-cancel:42"
    assert form(first) == {"cancellation_reason": ["abandoned"]}
    assert second.request.headers["Idempotency-Key"] == "pi-cancel:43"
    assert form(second) == {}


def test_payment_intent_cancel_refuses_an_unknown_reason_before_any_request(
    gateway: StripeGateway,
) -> None:
    # no HTTP mock: nothing may be sent
    with pytest.raises(ValueError, match="cancellation reason"):
        gateway.payment_intent_cancel(
            payment_intent_id="pi_1", idempotency_key="pi-cancel:1", reason="expired"
        )


def test_cancelling_a_succeeded_payment_intent_is_an_invalid_request_with_stripes_code(
    gateway: StripeGateway, mock_stripe: responses.RequestsMock
) -> None:
    # given: what Stripe answers for a PaymentIntent that already succeeded
    mock_stripe.post(
        f"{API_BASE}/v1/payment_intents/pi_1/cancel",
        json=_error("invalid_request_error", "payment_intent_unexpected_state"),
        status=400,
    )

    # when
    with pytest.raises(InvalidRequest) as info:
        gateway.payment_intent_cancel(payment_intent_id="pi_1", idempotency_key="pi-cancel:1")

    # then
    assert type(info.value) is InvalidRequest
    assert info.value.stripe_code == "payment_intent_unexpected_state"
    assert info.value.operation == "payment_intent_cancel"
    assert info.value.retryable is False


def test_transfer_reversal_create(
    gateway: StripeGateway, mock_stripe: responses.RequestsMock
) -> None:
    # given
    reversal = stripe_object("transfer_reversal")
    url = f"{API_BASE}/v1/transfers/{reversal['transfer']}/reversals"
    mock_stripe.post(url, json=reversal)
    mock_stripe.post(url, json=reversal)

    # when: a partial reversal, then the rest (no amount)
    partial = gateway.transfer_reversal_create(
        transfer_id=reversal["transfer"],
        amount=1100,
        asset="USD/2",
        idempotency_key="transfer-reversal:9",
        metadata={"payout_id": 9},
    )
    gateway.transfer_reversal_create(
        transfer_id=reversal["transfer"],
        amount=None,
        asset="USD/2",
        idempotency_key="transfer-reversal:10",
        metadata={},
    )

    # then
    assert partial == reversal
    first, second = mock_stripe.calls
    assert first.request.headers["Idempotency-Key"] == "transfer-reversal:9"
    assert form(first) == {"amount": ["1100"], "metadata[payout_id]": ["9"]}
    assert second.request.headers["Idempotency-Key"] == "transfer-reversal:10"
    assert form(second) == {}


@pytest.mark.parametrize(
    ("amount", "asset", "error"),
    [
        (0, "USD/2", ValueError),
        (-1, "USD/2", ValueError),
        (1.5, "USD/2", ValueError),
        (100, "USD/3", AssetNotSupported),
        (None, "JPY/2", AssetNotSupported),
    ],
)
def test_transfer_reversal_create_refuses_bad_amounts_before_any_request(
    gateway: StripeGateway, amount: Any, asset: str, error: type[Exception]
) -> None:
    # no HTTP mock: nothing may be sent
    with pytest.raises(error):
        gateway.transfer_reversal_create(
            transfer_id="tr_1", amount=amount, asset=asset, idempotency_key="k", metadata={}
        )


@pytest.mark.parametrize(
    ("status", "body", "expected"),
    [
        (400, _error("invalid_request_error", "balance_insufficient"), InvalidRequest),
        (500, _error("api_error"), OutcomeUnknown),
    ],
)
def test_transfer_reversal_errors(
    gateway: StripeGateway,
    mock_stripe: responses.RequestsMock,
    status: int,
    body: dict[str, Any],
    expected: type[PaymentProviderError],
) -> None:
    mock_stripe.post(f"{API_BASE}/v1/transfers/tr_1/reversals", json=body, status=status)

    with pytest.raises(expected) as info:
        gateway.transfer_reversal_create(
            transfer_id="tr_1", amount=None, asset="USD/2", idempotency_key="k", metadata={}
        )

    assert type(info.value) is expected
    assert info.value.operation == "transfer_reversal_create"


# --- construction ---------------------------------------------------------------------------
def test_get_gateway_is_built_from_settings(
    settings: Any, mock_stripe: responses.RequestsMock
) -> None:
    settings.STRIPE_API_BASE = "https://elsewhere.test"
    settings.STRIPE_API_KEY = "sk_test_other"
    mock_stripe.get("https://elsewhere.test/v1/balance", json=stripe_object("balance"))

    gateway = get_gateway()
    gateway.balance_retrieve()

    assert gateway is get_gateway()
    assert mock_stripe.calls[0].request.headers["Authorization"] == "Bearer sk_test_other"
    client = gateway._client._requestor._client
    assert isinstance(client, stripe.RequestsClient)
    assert client._timeout == (5.0, settings.STRIPE_TIMEOUT)
    assert gateway._client._requestor._options.max_network_retries == 0


def test_only_the_seam_imports_stripe() -> None:
    # given: every Python module of the project outside tests and the emulator
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    offenders = []
    for path in root.rglob("*.py"):
        relative = path.relative_to(root).as_posix()
        if (
            relative.startswith((".venv/", "tests/", "stripe_emulator/"))
            or "/migrations/" in relative
        ):
            continue
        if relative == "stripe_gateway/client.py":
            continue
        for line in path.read_text().splitlines():
            stripped = line.strip()
            if stripped.startswith(("import stripe", "from stripe ", "from stripe.")):
                offenders.append(relative)
    assert offenders == []


# --- no Stripe call inside a transaction ----------------------------------------------------
@pytest.mark.django_db
def test_the_testcase_transaction_does_not_count_but_an_atomic_block_does() -> None:
    assert open_atomic_depth() == 0
    with transaction.atomic():
        assert open_atomic_depth() == 1
        with transaction.atomic():
            assert open_atomic_depth() == 2


@pytest.mark.django_db
def test_a_stripe_call_inside_atomic_fails_the_test(
    gateway: StripeGateway, stripe_atomic_violations: list[str]
) -> None:
    # when: a call inside a transaction (no HTTP mock: it must not reach the network)
    with pytest.raises(StripeCallInTransaction), transaction.atomic():
        gateway.balance_retrieve()

    # then: recorded, so the autouse fixture would fail the test even if it were swallowed
    assert stripe_atomic_violations == ["balance_retrieve inside 1 open atomic block(s)"]
    stripe_atomic_violations.clear()  # this test wanted it


# The real `_call`, captured at import time, before the autouse test guard patches it.
REAL_CALL = StripeGateway._call


@pytest.mark.django_db
def test_the_runtime_guard_logs_in_production_and_raises_when_forbidden(
    gateway: StripeGateway,
    mock_stripe: responses.RequestsMock,
    settings: Any,
    caplog: pytest.LogCaptureFixture,
) -> None:
    mock_stripe.get(f"{API_BASE}/v1/balance", json=stripe_object("balance"))

    # given: production settings -> an error log, and the call goes ahead
    settings.STRIPE_FORBID_IN_ATOMIC = False
    with caplog.at_level(logging.ERROR, logger="stripe_gateway.client"), transaction.atomic():
        balance = REAL_CALL(gateway, "balance_retrieve", gateway.v1.balance.retrieve, write=False)
    assert balance == stripe_object("balance")
    assert "Stripe call balance_retrieve inside an open database transaction" in caplog.text

    # given: test settings -> it raises before any request
    settings.STRIPE_FORBID_IN_ATOMIC = True
    with pytest.raises(StripeCallInTransaction), transaction.atomic():
        REAL_CALL(gateway, "balance_retrieve", gateway.v1.balance.retrieve, write=False)
    assert len(mock_stripe.calls) == 1


def test_plain_dicts_are_returned_recursively(
    gateway: StripeGateway, mock_stripe: responses.RequestsMock
) -> None:
    charge = stripe_object("charge")
    charge["balance_transaction"] = stripe_object("balance_transaction")
    mock_stripe.get(f"{API_BASE}/v1/charges/ch_1", json=charge)

    result = gateway.charge_retrieve("ch_1")

    assert type(result) is dict
    assert type(result["balance_transaction"]) is dict
    assert json.loads(json.dumps(result)) == charge


def test_the_stripe_library_logs_warnings_only() -> None:
    # given: the project's logging configuration (stripe-python logs each request at INFO)
    from django.conf import settings

    # then
    assert settings.LOGGING["loggers"]["stripe"] == {"level": "WARNING"}
    assert logging.getLogger("stripe").getEffectiveLevel() == logging.WARNING


@responses.activate
def test_the_http_sessions_take_the_proxies_from_the_environment_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """requests would read the proxy variables and ~/.netrc on every call; the gateway reads
    the proxies for its address when it is built and trusts the environment no further."""
    from stripe_gateway.client import StripeGateway

    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY"):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.lower(), raising=False)
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.invalid:3128")
    proxied = StripeGateway(api_key="sk_test_x", api_base=API_BASE, http_client="requests")
    monkeypatch.setenv("NO_PROXY", urlsplit(API_BASE).hostname or "")
    bypassed = StripeGateway(api_key="sk_test_x", api_base=API_BASE, http_client="requests")
    monkeypatch.setenv("HTTPS_PROXY", "http://changed.invalid:3128")
    responses.get(f"{API_BASE}/v1/balance", json={"object": "balance", "available": []})

    for gateway, expected in ((proxied, {"https": "http://proxy.invalid:3128"}), (bypassed, {})):
        gateway.balance_retrieve()
        session = gateway._http._thread_local.session
        assert session.trust_env is False
        assert dict(session.proxies) == expected


def test_the_session_sends_what_the_sdk_builds_and_keeps_no_cookie_nor_follows_a_redirect(
    gateway: StripeGateway, mock_stripe: responses.RequestsMock
) -> None:
    """The cut-down session hands the SDK's request to the adapter as it is: method, form
    body, the API key, the idempotency key and requests' default headers; a cookie Stripe
    might set is not sent back, and a redirect is an error, never followed."""
    # given: a response that sets a cookie, then a redirect
    pi = stripe_object("payment_intent")
    mock_stripe.post(
        f"{API_BASE}/v1/payment_intents", json=pi, headers={"Set-Cookie": "sid=abc; Path=/"}
    )
    mock_stripe.get(
        f"{API_BASE}/v1/payment_intents/{pi['id']}",
        status=302,
        headers={"Location": f"{API_BASE}/v1/elsewhere"},
    )

    # when
    gateway.payment_intent_create(
        amount=1500, asset="USD/2", idempotency_key="order:7", metadata={"order_id": "7"}
    )
    with pytest.raises(PaymentProviderError):
        gateway.payment_intent_retrieve(pi["id"])

    # then: two calls, the second without the cookie; the redirect's target never asked
    first, second = mock_stripe.calls
    assert first.request.method == "POST"
    assert form(first)["amount"] == ["1500"]
    assert first.request.headers["Authorization"] == "Bearer sk_test_marketplace"
    assert first.request.headers["Idempotency-Key"] == "order:7"
    assert first.request.headers["User-Agent"].startswith("Stripe/v1 PythonBindings")
    assert (
        first.request.headers["Accept-Encoding"]
        == requests.utils.default_headers()["Accept-Encoding"]
    )
    assert "Cookie" not in second.request.headers
    assert second.request.method == "GET"


def test_the_sdk_formats_its_log_lines_only_when_they_go_somewhere(
    gateway: StripeGateway,
    mock_stripe: responses.RequestsMock,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """stripe-python builds its request and response lines (the body included) before the
    level is looked at; the gateway makes it look first. Enabled, the same lines arrive."""
    from stripe import _util

    formatted: list[dict[str, Any]] = []
    original = _util.logfmt

    def logfmt(props: dict[str, Any]) -> str:
        formatted.append(props)
        return original(props)

    monkeypatch.setattr(_util, "logfmt", logfmt)
    monkeypatch.setattr(stripe, "log", None)
    monkeypatch.setattr(_util, "STRIPE_LOG", None)
    mock_stripe.get(f"{API_BASE}/v1/balance", json={"object": "balance", "available": []})
    mock_stripe.get(f"{API_BASE}/v1/balance", json={"object": "balance", "available": []})
    mock_stripe.get(f"{API_BASE}/v1/balance", json={"object": "balance", "available": []})

    # when: the stripe logger at WARNING (production), then at INFO, then DEBUG
    with caplog.at_level(logging.WARNING, logger="stripe"):
        gateway.balance_retrieve()
    quiet = list(formatted)
    with caplog.at_level(logging.INFO, logger="stripe"):
        gateway.balance_retrieve()
    info = [r.getMessage() for r in caplog.records if r.name == "stripe"]
    caplog.clear()
    with caplog.at_level(logging.DEBUG, logger="stripe"):
        gateway.balance_retrieve()
    debug = [r.getMessage() for r in caplog.records if r.name == "stripe"]

    # then
    assert quiet == []
    assert any(m.startswith("message='Request to Stripe api'") for m in info)
    assert any(m.startswith("message='Stripe API response'") for m in info)
    assert not any("API response body" in m for m in info)
    assert any("message='API response body'" in m for m in debug)


def test_the_session_hands_an_argument_it_does_not_know_to_requests_own_way(
    mock_stripe: responses.RequestsMock,
) -> None:
    """Another SDK version passing more than the cut-down path knows (here `allow_redirects`)
    is answered by `requests.Session.request` itself, not refused."""
    from stripe_gateway.client import _Session

    mock_stripe.get(f"{API_BASE}/v1/balance", json={"object": "balance"})
    session = _Session()

    response = session.request("get", f"{API_BASE}/v1/balance", allow_redirects=False)

    assert response.status_code == 200
    assert response.json() == {"object": "balance"}


def test_an_sdk_without_the_console_level_keeps_its_own_log_functions(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The wrap reads stripe-python internals; an SDK that lacks one is left as it is, rather
    than every call failing on a missing attribute."""
    from stripe import _api_requestor, _util

    from stripe_gateway.client import _sdk_logs_when_enabled

    unwrapped = _api_requestor.log_info.__wrapped__  # type: ignore[attr-defined]
    monkeypatch.setattr(_api_requestor, "log_info", unwrapped)
    monkeypatch.delattr(_util, "_console_log_level")

    _sdk_logs_when_enabled()

    assert _api_requestor.log_info is unwrapped
