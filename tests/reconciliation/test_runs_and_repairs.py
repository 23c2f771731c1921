"""Runs over the same window, the safe repairs and their idempotence."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from ledger.domain import PostingInput
from ledger.models import Posting, Transaction
from ledger.selectors import balance_get
from ledger.services import transaction_post
from reconciliation.matching import Outcome
from reconciliation.models import ReconciliationItem, ReconciliationRun, StripeBalanceTransaction
from reconciliation.services import reconciliation_run, run_repairs_apply
from stripe_gateway.models import StripeEvent
from stripe_gateway.registry import HANDLERS, Registration
from tests.reconciliation.helpers import (
    DAY,
    HOT,
    WINDOW,
    book_payment,
    book_refund,
    payment,
    post,
    stripe_bt,
    uid,
)

pytestmark = pytest.mark.django_db
LATER = DAY + timedelta(days=5)


def run() -> ReconciliationRun:
    return reconciliation_run(
        window_start=WINDOW[0], window_end=WINDOW[1], import_from_stripe=False, now=LATER
    )


def outcomes(run: ReconciliationRun) -> dict[str, str]:
    return dict(ReconciliationItem.objects.filter(run=run).values_list("key", "outcome"))


def ledger_state() -> tuple[int, int, int]:
    return (
        Transaction.objects.count(),
        Posting.objects.count(),
        balance_get(address="stripe:balance", asset="USD/2"),
    )


def test_rerunning_a_window_changes_nothing_and_says_so():
    # given a day with a fee to book, a mismatch and a missing payment
    nofee, nofee_bt = payment(4000)
    book_payment(nofee, 4000, nofee_bt["fee"], with_fee=False)
    short, short_bt = payment(4000)
    book_payment(short, 3000, short_bt["fee"])
    payment(1000)
    first = run()
    ledger_after_first = ledger_state()
    stripe_rows = list(StripeBalanceTransaction.objects.order_by("id").values())

    # when the same window runs again
    second = run()

    # then it is a new run, linked to the first, identical in outcome, and wrote nothing else
    assert second.pk != first.pk
    assert second.previous_run_id == first.pk
    assert ledger_state() == ledger_after_first
    assert list(StripeBalanceTransaction.objects.order_by("id").values()) == stripe_rows
    assert outcomes(second) == {**outcomes(first), nofee: Outcome.MATCHED}
    assert second.changes["changed"] == {"fee_missing -> matched": 1}
    assert second.repairs["fees_booked"] == 0
    third = run()
    assert third.changes == {
        "previous_run": second.pk,
        "unchanged": 3,
        "changed": {},
        "new": {},
        "gone": {},
        "identical": True,
    }
    assert third.counts == second.counts
    assert third.amounts == second.amounts
    assert ledger_state() == ledger_after_first
    assert ReconciliationRun.objects.filter(pk=first.pk).values_list("counts", flat=True)[0] == {
        "fee_missing": 1,
        "amount_mismatch": 1,
        "missing_in_ledger": 1,
    }  # the first run was not rewritten


def test_stripe_fees_are_always_booked_after_a_run():
    # given payments, refunds and a dispute, some booked without their fee
    expected_fees = {}
    for gross, with_fee in [(1000, False), (2599, True), (9999, False), (123, False)]:
        charge, bt = payment(gross)
        book_payment(charge, gross, bt["fee"], with_fee=with_fee, txn=bt["id"])
        expected_fees[charge] = bt["fee"]
    dispute = uid("dp")
    stripe_bt(dispute, amount=-2000, fee=1500, category="dispute", type_="adjustment")
    post([("platform:disputes", "stripe:balance", 2000)], stripe_object=dispute, flow="dispute")
    expected_fees[dispute] = 1500
    standalone = stripe_bt(None, amount=-700, category="fee", type_="stripe_fee")
    expected_fees[standalone["id"]] = 700

    # when
    result = run()

    # then every Stripe fee is in the ledger, and a second run books nothing more
    for key, fee in expected_fees.items():
        booked = sum(
            p.amount
            for p in Posting.objects.filter(
                transaction__metadata__stripe_object=key,
                source__address="platform:stripe_fees",
                destination__address="stripe:balance",
            )
        )
        assert booked == fee, key
    assert result.repairs["fees_booked"] == 5
    again = run()
    assert again.counts == {"matched": 6}
    assert again.repairs["fees_booked"] == 0
    assert again.problems == 0


def test_fee_repair_is_idempotent_when_posted_again():
    charge, bt = payment(5000)
    book_payment(charge, 5000, bt["fee"], with_fee=False, txn=bt["id"])
    first = run()
    item = ReconciliationItem.objects.get(run=first, key=charge)
    before = ledger_state()

    # when the same repair is forced to pend and applied again (a crash before recording it)
    ReconciliationItem.objects.filter(pk=item.pk).update(repair_status="pending")
    report = run_repairs_apply(run=first)

    assert report.applied == 1
    assert ledger_state() == before
    assert "already booked" in ReconciliationItem.objects.get(pk=item.pk).repair_note


def test_duplicated_ledger_posting_is_found_and_reverted_by_the_safe_repair():
    # given a refund and a payment each booked twice
    charge, bt = payment(3000)
    book_payment(charge, 3000, bt["fee"], txn=bt["id"], reference="payment-1")
    duplicate = book_payment(charge, 3000, bt["fee"], txn=bt["id"], reference="payment-1-dup")
    refund = uid("re")
    stripe_bt(refund, amount=-800, category="refund", txn=(refund_txn := uid("txn")))
    book_refund(refund, 800, txn=refund_txn)
    book_refund(refund, 800, txn=refund_txn)

    found = run()
    assert outcomes(found) == {charge: Outcome.MATCHED_TWICE, refund: Outcome.MATCHED_TWICE}
    assert found.problems == 2

    # when staff apply the safe repairs
    report = run_repairs_apply(run=found)

    # then the duplicates are reverted and the window matches
    assert (report.applied, report.failed) == (2, 0)
    revert = Transaction.objects.get(reverts_id=duplicate.pk)
    assert revert.reference == f"reconciliation-revert:{duplicate.pk}"
    assert revert.metadata["flow"] == "reconciliation-revert"
    assert ReconciliationRun.objects.get(pk=found.pk).problems == 0
    after = run()
    assert set(outcomes(after).values()) == {Outcome.MATCHED}
    assert after.changes["changed"] == {"matched_twice -> matched": 2}
    # applying again does nothing
    assert run_repairs_apply(run=found).applied == 0


def test_a_duplicate_that_is_not_identical_is_flagged_but_not_auto_reverted():
    charge, bt = payment(3000)
    book_payment(charge, 3000, bt["fee"], txn=bt["id"])
    post([("stripe:balance", "orders:other", 2000)], stripe_object=charge, txn=bt["id"])

    result = run()

    item = ReconciliationItem.objects.get(run=result, key=charge)
    assert item.outcome == Outcome.MATCHED_TWICE
    assert item.safe is False
    assert "revert the duplicate" in item.suggested_action


def _book_from_event(event: StripeEvent) -> None:
    obj = event.data_object
    transaction_post(
        postings=[
            PostingInput(
                "stripe:balance", f"orders:{obj['metadata']['order']}", "USD/2", obj["amount"]
            ),
            PostingInput(
                "platform:stripe_fees", "stripe:balance", "USD/2", int(obj["metadata"]["fee"])
            ),
        ],
        reference=f"payment:{obj['latest_charge']}",
        metadata={"stripe_object": obj["latest_charge"], "flow": "payment"},
        overdraft=HOT,
    )


@pytest.fixture
def handlers() -> Any:
    """An empty handler table for the test (the apps' own handlers are set aside)."""
    saved = dict(HANDLERS)
    HANDLERS.clear()
    yield HANDLERS
    HANDLERS.clear()
    HANDLERS.update(saved)


def test_unprocessed_payment_webhook_in_the_inbox_is_found_and_replayed(handlers: Any):
    # given a payment whose payment_intent.succeeded event sits failed in the inbox
    handlers["payment_intent.succeeded"] = Registration(
        "payment_intent.succeeded", _book_from_event
    )
    charge, pi = uid("ch"), uid("pi")
    bt = stripe_bt(
        None,
        amount=2500,
        fee=103,
        source_object={"id": charge, "object": "charge", "payment_intent": pi},
    )
    event_id = f"evt_{uid('x')}"
    StripeEvent.objects.create(
        stripe_id=event_id,
        type="payment_intent.succeeded",
        created=DAY + timedelta(hours=10),
        payload={
            "id": event_id,
            "object": "event",
            "type": "payment_intent.succeeded",
            "created": int((DAY + timedelta(hours=10)).timestamp()),
            "livemode": False,
            "data": {
                "object": {
                    "id": pi,
                    "object": "payment_intent",
                    "amount": 2500,
                    "latest_charge": charge,
                    "metadata": {"order": "77", "fee": "103"},
                }
            },
        },
        status=StripeEvent.Status.FAILED,
        attempts=10,
        last_error="RuntimeError: database was down",
    )

    found = run()
    item = ReconciliationItem.objects.get(run=found, key=charge)
    assert item.outcome == Outcome.MISSING_IN_LEDGER
    assert item.repair == {"action": "replay_event", "event_id": event_id, "stripe_object": charge}
    assert item.safe
    assert f"payment webhook for {charge} never processed: replay event {event_id}" in (
        item.suggested_action
    )
    assert bt["net"] == 2397

    report = run_repairs_apply(run=found)

    assert (report.applied, report.failed) == (1, 0)
    assert StripeEvent.objects.get(stripe_id=event_id).status == StripeEvent.Status.PROCESSED
    assert outcomes(run()) == {charge: Outcome.MATCHED}


def test_a_failing_repair_is_recorded_and_leaves_the_item_open(handlers: Any):
    def broken(event: StripeEvent) -> None:
        raise RuntimeError("handler bug")

    handlers["charge.succeeded"] = Registration("charge.succeeded", broken)
    charge = uid("ch")
    stripe_bt(charge, amount=1000, fee=59)
    event_id = f"evt_{uid('x')}"
    StripeEvent.objects.create(
        stripe_id=event_id,
        type="charge.succeeded",
        created=DAY + timedelta(hours=10),
        payload={
            "id": event_id,
            "object": "event",
            "type": "charge.succeeded",
            "created": int((DAY + timedelta(hours=10)).timestamp()),
            "livemode": False,
            "data": {"object": {"id": charge, "object": "charge"}},
        },
        status=StripeEvent.Status.RECEIVED,
    )
    found = run()

    report = run_repairs_apply(run=found)

    assert (report.applied, report.failed) == (0, 1)
    item = ReconciliationItem.objects.get(run=found, key=charge)
    assert item.repair_status == ReconciliationItem.RepairStatus.FAILED
    assert "handler bug" in item.repair_note
    assert ReconciliationRun.objects.get(pk=found.pk).problems == 1


def test_a_bad_window_is_refused_and_no_run_is_stored():
    from reconciliation.errors import InvalidWindow

    with pytest.raises(InvalidWindow):
        reconciliation_run(window_start=WINDOW[1], window_end=WINDOW[0], import_from_stripe=False)
    assert ReconciliationRun.objects.count() == 0
