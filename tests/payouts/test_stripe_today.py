"""Payout transfers against the emulator behaving like the pinned Stripe: funds pending until
`available_on` (a transfer without `source_transaction` is refused `balance_insufficient`
and paid once the funds are available), and 429 answers with `Stripe-Should-Retry`
(retried by the client with the same idempotency key: never a second transfer)."""

from __future__ import annotations

from typing import Any

import pytest

from payouts.models import Payout
from payouts.services import payouts_schedule
from stripe_emulator import EmulatorServer
from tests.payouts.conftest import API_KEY
from tests.payouts.helpers import assert_books, bal, key, make_payee

pytestmark = pytest.mark.django_db
TWO_DAYS = 2 * 86400


@pytest.fixture
def pending_emulator(emulator_factory: Any) -> EmulatorServer:
    """Charge and top-up funds stay pending for two days, as on Stripe."""
    server = emulator_factory(port=0, available_delay_seconds=TWO_DAYS)
    status, body = server.request(
        "POST", "/v1/topups", {"amount": 100_000, "currency": "usd"}, api_key=API_KEY
    )
    assert status == 200, body
    return server


def test_a_transfer_refused_for_pending_funds_is_paid_once_they_are_available(
    pending_emulator: EmulatorServer,
) -> None:
    # given: the platform's money at Stripe is all pending; a restaurant is owed 4,000
    restaurant = make_payee("restaurant", balance=4_000)
    _, balance = pending_emulator.request("GET", "/v1/balance", api_key=API_KEY)
    assert (balance["available"][0]["amount"], balance["pending"][0]["amount"]) == (0, 100_000)

    # when: the payout pass runs
    first = payouts_schedule(payee_ids=[key(restaurant)])

    # then: Stripe refused the transfer; the money went back to the restaurant, which is not
    # held (the refusal is the platform's funds, not its account)
    refused = Payout.objects.get(pk=first.created[0])
    assert refused.state == "returned"
    assert "balance_insufficient" in refused.last_error
    assert pending_emulator.transfer_counts() == {}
    assert bal(restaurant.ledger_address) == 4_000

    # when: two days later the funds are available, and the next pass runs
    pending_emulator.advance_clock(TWO_DAYS + 1)
    second = payouts_schedule(payee_ids=[key(restaurant)])

    # then: paid, with exactly one transfer at Stripe
    paid = Payout.objects.get(pk=second.created[0])
    assert paid.state == "paid"
    assert pending_emulator.transfer_counts() == {str(paid.pk): 1}
    assert bal(restaurant.ledger_address) == 0
    assert_books([restaurant])


def test_rate_limited_transfers_are_retried_and_never_duplicated(
    emulator: EmulatorServer, settings: Any
) -> None:
    # given: half of the transfer calls answered 429 Stripe-Should-Retry: true; the client
    # retries (as in production) with the same Idempotency-Key
    settings.STRIPE_MAX_NETWORK_RETRIES = 8
    emulator.set_chaos(seed=4, api_rate_limit_rate=0.5, api_paths=("/v1/transfers",))
    payees = [make_payee("restaurant", balance=1_000 + i) for i in range(4)]

    # when
    result = payouts_schedule(payee_ids=[key(p) for p in payees])

    # then: every payout paid, one transfer each, although Stripe said 429 several times
    assert emulator.stats()["api"]["chaos_rate_limited"] >= 4  # seed 4: the first six calls
    assert {Payout.objects.get(pk=pk).state for pk in result.created} == {"paid"}
    assert emulator.transfer_counts() == {str(pk): 1 for pk in result.created}
    assert_books(payees)
