"""The scheduling pass and the happy path to `paid`, against the Stripe emulator."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone

from ledger.models import Transaction
from payouts.errors import NothingToPay
from payouts.models import Payout, PayoutEvent, PayoutPayee
from payouts.services import payee_hold, payout_create, payouts_schedule
from stripe_emulator import EmulatorServer
from tests.payouts.helpers import assert_books, bal, credit, debit, key, make_payee

pytestmark = pytest.mark.django_db


def test_a_pass_pays_every_payee_what_the_ledger_owes(emulator: EmulatorServer) -> None:
    # given: two restaurants and a rider with balances
    r1 = make_payee("restaurant", balance=12_345)
    r2 = make_payee("restaurant", balance=700)
    rider = make_payee("rider", balance=2_500)
    before = bal("stripe:balance")
    # when
    result = payouts_schedule(payee_ids=[key(r1), key(r2), key(rider)])
    # then: one payout each, paid, exactly one transfer each at Stripe
    assert result.candidates == 3 and len(result.created) == 3
    assert result.amounts == {"USD/2": 15_545}
    payouts = {p.payee_address: p for p in Payout.objects.all()}
    assert {a: p.state for a, p in payouts.items()} == {
        r1.ledger_address: "paid",
        r2.ledger_address: "paid",
        rider.ledger_address: "paid",
    }
    assert {a: p.amount for a, p in payouts.items()} == {
        r1.ledger_address: 12_345,
        r2.ledger_address: 700,
        rider.ledger_address: 2_500,
    }
    counts = emulator.transfer_counts()
    assert counts == {str(p.pk): 1 for p in payouts.values()}
    # and the ledger: payees at 0, payout accounts at 0, stripe:balance got the money back
    for payee in (r1, r2, rider):
        assert bal(payee.ledger_address) == 0
    assert bal("stripe:balance") == before + 15_545
    assert_books([r1, r2, rider])


def test_the_payout_row_and_its_ledger_transactions(emulator: EmulatorServer) -> None:
    restaurant = make_payee("restaurant", balance=4_200)
    payouts_schedule(payee_ids=[key(restaurant)])
    payout = Payout.objects.get()
    # then: the names the contract fixes
    assert payout.seq == 1
    assert payout.account == f"{restaurant.ledger_address}:payouts:001"
    assert payout.destination == restaurant.stripe_account_id
    assert payout.idempotency_key == f"transfer:{payout.pk}"
    assert payout.transfer_id and payout.transfer_id.startswith("tr_")
    assert payout.paid_at and payout.submitted_at and payout.submitting_at
    assert payout.attempts == 1
    reserve = Transaction.objects.get(reference=f"payout-reserve:{payout.pk}")
    settle = Transaction.objects.get(reference=f"payout-settle:{payout.pk}")
    assert reserve.metadata["flow"] == "payout-reserve"
    assert settle.metadata == {
        "flow": "payout-settle",
        "stripe_object": payout.transfer_id,
        "payout_id": str(payout.pk),
    }
    # the transfer at Stripe
    status, transfer = emulator.request(
        "GET", f"/v1/transfers/{payout.transfer_id}", api_key="sk_test_payouts"
    )
    assert status == 200
    assert transfer["amount"] == 4_200 and transfer["currency"] == "usd"
    assert transfer["destination"] == restaurant.stripe_account_id
    assert transfer["transfer_group"] == f"PAYOUT_{payout.pk}"
    assert transfer["metadata"]["payout_id"] == str(payout.pk)
    # and the audit trail, in order
    trail = list(PayoutEvent.objects.filter(payout=payout).values_list("from_state", "to_state"))
    assert trail == [
        ("", "pending"),
        ("pending", "reserved"),
        ("reserved", "submitting"),
        ("submitting", "submitted"),
        ("submitted", "paid"),
    ]


def test_sequence_numbers_grow_per_payee(emulator: EmulatorServer) -> None:
    restaurant = make_payee("restaurant", balance=1_000)
    payouts_schedule(payee_ids=[key(restaurant)])
    credit(restaurant.ledger_address, 2_000)
    payouts_schedule(payee_ids=[key(restaurant)])
    credit(restaurant.ledger_address, 3_000)
    payouts_schedule(payee_ids=[key(restaurant)])
    rows = list(Payout.objects.order_by("seq").values_list("seq", "account", "amount", "state"))
    address = restaurant.ledger_address
    assert rows == [
        (1, f"{address}:payouts:001", 1_000, "paid"),
        (2, f"{address}:payouts:002", 2_000, "paid"),
        (3, f"{address}:payouts:003", 3_000, "paid"),
    ]
    assert PayoutPayee.objects.get(kind="restaurant", payee_id=restaurant.pk).last_seq == 3


def test_who_is_skipped(emulator: EmulatorServer, settings: Any) -> None:
    # given
    settings.PAYOUTS_MIN_AMOUNT = 1_000
    ok = make_payee("restaurant", balance=1_000)
    below = make_payee("restaurant", balance=999)
    negative = make_payee("rider", balance=0)
    debit(negative.ledger_address, 300)
    held = make_payee("rider", balance=5_000)
    payee_hold(kind="rider", payee_id=held.pk, reason="KYC review", actor="staff:ann")
    not_onboarded = make_payee("restaurant", balance=5_000, onboard=False)
    everyone = [ok, below, negative, held, not_onboarded]
    # when
    result = payouts_schedule(payee_ids=[key(p) for p in everyone])
    # then
    assert result.candidates == 1 and len(result.created) == 1
    assert list(Payout.objects.values_list("payee_address", flat=True)) == [ok.ledger_address]
    assert bal(below.ledger_address) == 999
    assert bal(negative.ledger_address) == -300
    assert bal(held.ledger_address) == 5_000
    assert emulator.transfer_counts() == {str(Payout.objects.get().pk): 1}


def test_a_payee_with_a_payout_in_flight_is_skipped(emulator: EmulatorServer) -> None:
    restaurant = make_payee("restaurant", balance=1_000)
    first = payouts_schedule(payee_ids=[key(restaurant)], drive=False)
    assert Payout.objects.get().state == "reserved"
    credit(restaurant.ledger_address, 500)
    # when: a second pass while the first payout is in flight
    second = payouts_schedule(payee_ids=[key(restaurant)], drive=False)
    # then
    assert len(first.created) == 1 and second.created == [] and second.candidates == 0
    assert Payout.objects.count() == 1


def test_rolling_reserve_keeps_a_share_of_recent_earnings(
    emulator: EmulatorServer, settings: Any
) -> None:
    # given: 10% of what was credited over the last 7 days stays on the payee
    settings.PAYOUTS_ROLLING_RESERVE_BPS = 1_000
    restaurant = make_payee("restaurant", balance=10_001)
    # when
    payouts_schedule(payee_ids=[key(restaurant)])
    # then: 10% of 10,001 rounded up (1,001) stays
    payout = Payout.objects.get()
    assert payout.amount == 9_000 and payout.state == "paid"
    assert bal(restaurant.ledger_address) == 1_001


def test_rolling_reserve_only_counts_the_window(emulator: EmulatorServer, settings: Any) -> None:
    from payouts.selectors import rolling_reserve

    settings.PAYOUTS_ROLLING_RESERVE_BPS = 2_500
    restaurant = make_payee("restaurant", balance=4_000)
    assert rolling_reserve(address=restaurant.ledger_address, asset="USD/2") == 1_000
    later = timezone.now() + timedelta(days=8)
    assert rolling_reserve(address=restaurant.ledger_address, asset="USD/2", now=later) == 0


def test_payout_create_for_one_payee(emulator: EmulatorServer) -> None:
    rider = make_payee("rider", balance=800)
    payout = payout_create(kind="rider", payee_id=rider.pk, actor="staff:bob")
    payout.refresh_from_db()
    assert payout.state == "paid" and payout.amount == 800
    with pytest.raises(NothingToPay, match="nothing to pay"):
        payout_create(kind="rider", payee_id=rider.pk, actor="staff:bob")


def test_payout_create_refusals(emulator: EmulatorServer) -> None:
    rider = make_payee("rider", balance=800, onboard=False)
    with pytest.raises(NothingToPay) as caught:
        payout_create(kind="rider", payee_id=rider.pk, actor="staff:bob")
    assert caught.value.code == "payee_not_onboarded"
    restaurant = make_payee("restaurant", balance=800)
    payout_create(kind="restaurant", payee_id=restaurant.pk, actor="t", drive=False)
    credit(restaurant.ledger_address, 800)
    with pytest.raises(NothingToPay) as caught:
        payout_create(kind="restaurant", payee_id=restaurant.pk, actor="t")
    assert caught.value.code == "payout_in_flight"
