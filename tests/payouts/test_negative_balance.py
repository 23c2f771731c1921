"""A refund or dispute that makes a payee negative blocks its payout until it is covered
(with the marketplace's own refund and dispute flows)."""

from __future__ import annotations

import pytest

from marketplace.flows import flow_post, monetary
from payouts.models import Payout
from payouts.services import payouts_drive, payouts_schedule
from stripe_emulator import EmulatorServer
from tests.payouts.helpers import assert_books, bal, credit, key, make_payee

pytestmark = pytest.mark.django_db


def refund_borne_by(restaurant: object, rider: object, amount: int, ref: str) -> None:
    flow_post(
        "refund",
        vars={
            "amount": monetary("USD/2", amount),
            "restaurant": restaurant.ledger_address,  # type: ignore[attr-defined]
            "rider": rider.ledger_address,  # type: ignore[attr-defined]
            "platform_share": "0%",
            "restaurant_share": "1/1",
            "rider_share": "0%",
        },
        reference=f"refund:{ref}",
    )


def dispute_against(restaurant: object, amount: int, ref: str) -> None:
    flow_post(
        "dispute_withdrawn",
        vars={
            "amount": monetary("USD/2", amount),
            "fee": monetary("USD/2", 1500),
            "bearer": restaurant.ledger_address,  # type: ignore[attr-defined]
        },
        reference=f"dispute-withdrawn:{ref}",
    )


def test_a_refund_after_payout_blocks_the_next_until_covered(emulator: EmulatorServer) -> None:
    # given: a restaurant paid out, then a refund it bears
    restaurant = make_payee("restaurant", balance=3_000)
    rider = make_payee("rider")
    payouts_schedule(payee_ids=[key(restaurant)])
    refund_borne_by(restaurant, rider, 2_000, "r1")
    assert bal(restaurant.ledger_address) == -2_000
    # when: new earnings that do not cover the debt
    credit(restaurant.ledger_address, 1_500)
    blocked = payouts_schedule(payee_ids=[key(restaurant)])
    # then: no payout
    assert blocked.created == [] and blocked.candidates == 0
    assert Payout.objects.count() == 1
    # when: the debt is covered and more
    credit(restaurant.ledger_address, 1_000)
    later = payouts_schedule(payee_ids=[key(restaurant)])
    # then: only the net is paid (1,500 + 1,000 - 2,000)
    assert len(later.created) == 1
    assert Payout.objects.get(pk=later.created[0]).amount == 500
    assert bal(restaurant.ledger_address) == 0
    assert_books([restaurant, rider])


def test_a_dispute_between_reserve_and_submit_cancels_the_payout(emulator: EmulatorServer) -> None:
    # given: a reserved payout (not yet sent to Stripe)
    restaurant = make_payee("restaurant", balance=10_000)
    payouts_schedule(payee_ids=[key(restaurant)], drive=False)
    reserved = Payout.objects.get()
    assert reserved.state == "reserved" and bal(restaurant.ledger_address) == 0
    # when: a dispute the restaurant bears lands, then the driver runs
    dispute_against(restaurant, 4_000, "dp_1")
    assert bal(restaurant.ledger_address) == -4_000
    payouts_drive(ids=[reserved.pk])
    # then: nothing sent; the reserve came back and covered the debt
    reserved.refresh_from_db()
    assert reserved.state == "returned"
    assert "negative" in reserved.events.get(to_state="returned").why
    assert emulator.transfer_counts() == {}
    assert bal(restaurant.ledger_address) == 6_000
    # and the next pass pays what is left
    again = payouts_schedule(payee_ids=[key(restaurant)])
    assert Payout.objects.get(pk=again.created[0]).amount == 6_000
    assert Payout.objects.get(pk=again.created[0]).state == "paid"
    assert_books([restaurant])


def test_a_payout_already_at_stripe_runs_its_course(emulator: EmulatorServer) -> None:
    # A refund after the transfer left cannot stop it: the payee is simply negative after.
    restaurant = make_payee("restaurant", balance=2_000)
    rider = make_payee("rider")
    payouts_schedule(payee_ids=[key(restaurant)])
    refund_borne_by(restaurant, rider, 500, "r2")
    assert Payout.objects.get().state == "paid"
    assert bal(restaurant.ledger_address) == -500
