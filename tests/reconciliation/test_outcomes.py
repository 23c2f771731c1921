"""Every outcome from a constructed case: balance transactions stored as if imported, ledger
transactions posted like the flows post them, then one run over the window."""

from __future__ import annotations

from datetime import timedelta

import pytest

from ledger.models import Transaction
from reconciliation.matching import Outcome
from reconciliation.models import ReconciliationItem, ReconciliationRun
from reconciliation.services import reconciliation_run
from tests.reconciliation.helpers import (
    ASSET,
    DAY,
    WINDOW,
    book_payment,
    book_refund,
    payment,
    post,
    stripe_bt,
    uid,
)

pytestmark = pytest.mark.django_db

LATER = DAY + timedelta(days=5)  # "now" for runs: the window is past its grace period


def run(now=LATER) -> ReconciliationRun:
    return reconciliation_run(
        window_start=WINDOW[0], window_end=WINDOW[1], import_from_stripe=False, now=now
    )


def item(run: ReconciliationRun, key: str) -> ReconciliationItem:
    return ReconciliationItem.objects.get(run=run, key=key)


def test_matched_payment_refund_and_dispute_with_two_balance_transactions():
    # given a payment, a partial refund and a dispute lost then won (one dp_, two txns)
    charge, bt = payment(2599)
    book_payment(charge, 2599, bt["fee"], txn=bt["id"])
    refund = uid("re")
    stripe_bt(refund, amount=-500, category="refund")
    book_refund(refund, 500)
    dispute = uid("dp")
    stripe_bt(dispute, amount=-2599, fee=1500, category="dispute", type_="adjustment")
    stripe_bt(
        dispute,
        amount=2599,
        category="dispute_reversal",
        type_="adjustment",
        created=DAY + timedelta(hours=20),
    )
    post(
        [
            ("platform:disputes", "stripe:balance", 2599),
            ("platform:stripe_fees", "stripe:balance", 1500),
        ],
        stripe_object=dispute,
        flow="dispute",
    )
    post(
        [("stripe:balance", "platform:disputes", 2599)],
        stripe_object=dispute,
        flow="dispute-won",
        timestamp=DAY + timedelta(hours=20),
    )

    # when
    result = run()

    # then
    assert result.status == ReconciliationRun.Status.SUCCEEDED
    assert result.counts == {"matched": 3}
    assert result.problems == 0
    paid = item(result, charge)
    assert (paid.stripe_net, paid.ledger_net, paid.stripe_fee, paid.ledger_fee) == (
        2599 - bt["fee"],
        2599 - bt["fee"],
        bt["fee"],
        bt["fee"],
    )
    disputed = item(result, dispute)
    assert disputed.outcome == Outcome.MATCHED
    assert disputed.balance_transaction_count == 2
    assert disputed.ledger_transaction_count == 2
    assert (disputed.stripe_net, disputed.ledger_net) == (-1500, -1500)
    assert disputed.suggested_action == ""


def test_fee_missing_is_found_and_booked_once():
    # given a payment booked without its Stripe fee
    charge, bt = payment(5000)
    book_payment(charge, 5000, bt["fee"], with_fee=False, txn=bt["id"])

    # when
    first = run()

    # then the fee is found and booked, idempotently, under stripe-fee:<txn>
    found = item(first, charge)
    assert found.outcome == Outcome.FEE_MISSING
    assert found.difference == bt["fee"]
    assert found.repair["action"] == "book_fee"
    assert found.repair_status == ReconciliationItem.RepairStatus.APPLIED
    assert first.repairs["fees_booked"] == 1
    assert first.problems == 0  # repaired
    fee_tx = Transaction.objects.get(reference=f"stripe-fee:{bt['id']}")
    assert fee_tx.metadata == {
        "stripe_object": charge,
        "stripe_balance_transaction": bt["id"],
        "flow": "stripe-fee",
    }
    second = run()
    assert item(second, charge).outcome == Outcome.MATCHED
    assert item(second, charge).previous_outcome == Outcome.FEE_MISSING
    assert Transaction.objects.filter(metadata__flow="stripe-fee").count() == 1


def test_amount_mismatch():
    charge, bt = payment(2599)
    book_payment(charge, 2499, bt["fee"], txn=bt["id"])

    result = run()

    found = item(result, charge)
    assert found.outcome == Outcome.AMOUNT_MISMATCH
    assert found.difference == -100
    assert not found.safe
    assert "difference of -100" in found.suggested_action
    assert result.problems == 1


def test_missing_in_ledger_without_any_event_is_flagged_for_sync():
    charge, bt = payment(1200)

    result = run()

    found = item(result, charge)
    assert found.outcome == Outcome.MISSING_IN_LEDGER
    assert (found.stripe_net, found.ledger_net, found.ledger_transaction_count) == (
        bt["net"],
        0,
        0,
    )
    assert found.difference == -bt["net"]
    assert "stripe_events sync --since" in found.suggested_action
    assert found.safe is False
    assert found.repair_status == ReconciliationItem.RepairStatus.NONE


def test_missing_at_stripe_after_the_grace_period_and_awaiting_before():
    # given a ledger movement naming a charge Stripe never reported
    ghost = uid("ch")
    tx = book_payment(ghost, 1000, 59)

    # when the grace period has passed, and when it has not
    late = run(now=LATER)
    early = run(now=DAY + timedelta(hours=12))

    # then
    found = item(late, ghost)
    assert found.outcome == Outcome.MISSING_AT_STRIPE
    assert found.ledger_transactions == str(tx.pk)
    assert (found.ledger_net, found.ledger_fee, found.stripe_net) == (941, 59, 0)
    assert item(early, ghost).outcome == Outcome.AWAITING_STRIPE
    assert early.problems == 0


def test_matched_twice_by_duplicate_link_offers_a_safe_revert():
    # given the same payment booked twice (a webhook processed twice under two references)
    charge, bt = payment(3000)
    first = book_payment(charge, 3000, bt["fee"], txn=bt["id"], reference="pay-1")
    duplicate = book_payment(charge, 3000, bt["fee"], txn=bt["id"], reference="pay-1-again")

    result = run()

    found = item(result, charge)
    assert found.outcome == Outcome.MATCHED_TWICE
    assert found.ledger_net == 2 * bt["net"]
    assert found.safe
    assert found.repair == {
        "action": "revert_duplicates",
        "stripe_object": charge,
        "original": first.pk,
        "transactions": [duplicate.pk],
    }


def test_matched_twice_by_exact_multiple_without_links():
    refund = uid("re")
    stripe_bt(refund, amount=-700, category="refund")
    book_refund(refund, 700)
    book_refund(refund, 700)

    result = run()

    assert item(result, refund).outcome == Outcome.MATCHED_TWICE
    assert item(result, refund).ledger_net == -1400


def test_unknown_reporting_category_goes_to_suspense():
    source = uid("ch")
    stripe_bt(source, amount=-300, category="brand_new_category", type_="brand_new_type")
    post([("platform:losses", "stripe:balance", 300)], stripe_object=source, flow="other")

    result = run()

    found = item(result, source)
    assert found.outcome == Outcome.SUSPENSE
    assert "brand_new_category" in found.suggested_action
    assert result.status == ReconciliationRun.Status.SUCCEEDED


def test_ledger_movement_without_stripe_object_goes_to_suspense():
    tx = post([("world", "stripe:balance", 250)], stripe_object=None, flow="manual")

    result = run()

    found = item(result, f"#{tx.pk}")
    assert found.outcome == Outcome.SUSPENSE
    assert found.stripe_object is None
    assert found.ledger_net == -250
    assert "without naming a Stripe object" in found.suggested_action


def test_every_outcome_in_one_run_with_amounts_per_outcome():
    charge, bt = payment(2000)
    book_payment(charge, 2000, bt["fee"], txn=bt["id"])
    short, short_bt = payment(2000)
    book_payment(short, 1900, short_bt["fee"])
    nofee, nofee_bt = payment(2000)
    book_payment(nofee, 2000, nofee_bt["fee"], with_fee=False)
    payment(2000)  # missing in the ledger
    ghost = uid("tr")
    post([("payouts:1", "stripe:balance", 800)], stripe_object=ghost, flow="payout-settle")
    twice, twice_bt = payment(2000)
    book_payment(twice, 2000, twice_bt["fee"], txn=twice_bt["id"])
    book_payment(twice, 2000, twice_bt["fee"], txn=twice_bt["id"])
    odd = uid("xx")
    stripe_bt(odd, amount=10, category="something_new")

    result = run()

    assert result.counts == {
        "matched": 1,
        "amount_mismatch": 1,
        "fee_missing": 1,
        "missing_in_ledger": 1,
        "missing_at_stripe": 1,
        "matched_twice": 1,
        "suspense": 1,
    }
    assert result.amounts["missing_at_stripe"][ASSET] == {
        "items": 1,
        "stripe_net": 0,
        "ledger_net": -800,
        "difference": -800,
    }
    assert result.problems == 5  # 6 problem items; the fee_missing one was repaired in the run


def test_fee_booked_through_another_account_is_flagged_not_auto_booked():
    # given a dispute whose fee the ledger took from platform:disputes, not platform:stripe_fees
    dispute = uid("dp")
    stripe_bt(dispute, amount=-2599, fee=1500, category="dispute", type_="adjustment")
    post(
        [
            ("platform:disputes", "stripe:balance", 2599),
            ("platform:disputes", "stripe:balance", 1500),
        ],
        stripe_object=dispute,
        flow="dispute",
    )

    # when
    result = run()

    # then the net matches, the fee is reported, and nothing is booked on top
    found = item(result, dispute)
    assert found.outcome == Outcome.FEE_MISSING
    assert (found.difference, found.stripe_fee, found.ledger_fee) == (0, 1500, 0)
    assert found.repair is None
    assert not found.safe
    assert "booked from another account than platform:stripe_fees" in found.suggested_action
    assert result.repairs["fees_booked"] == 0
    assert not Transaction.objects.filter(metadata__flow="stripe-fee").exists()
    assert result.problems == 1
