"""Webhook handlers: transfer.created / transfer.reversed and the connected accounts'
payout.failed / payout.canceled, through the marketplace's inbox (ingest + process), with
the Stripe objects from the emulator. Replays change nothing."""

from __future__ import annotations

import itertools
import time
from typing import Any

import pytest

from ledger.models import Transaction
from payouts.models import PayeeHoldChange, Payout
from payouts.services import driving, payouts_schedule
from stripe_emulator import EmulatorServer
from stripe_gateway.services import event_ingest, event_process
from tests.payouts.conftest import API_KEY
from tests.payouts.helpers import Crash, assert_books, bal, drive_until_done, key, make_payee

pytestmark = pytest.mark.django_db

_ids = itertools.count(1)


def deliver(
    event_type: str, obj: dict[str, Any], *, account: str | None = None, event_id: str | None = None
) -> Any:
    payload: dict[str, Any] = {
        "id": event_id or f"evt_payouts_{next(_ids)}_{time.time_ns()}",
        "object": "event",
        "type": event_type,
        "created": int(time.time()),
        "livemode": False,
        "api_version": "2024-06-20",
        "data": {"object": obj},
    }
    if account:
        payload["account"] = account
    event_ingest(payload=payload, schedule=False)
    return event_process(event_id=payload["id"])


def transfer(emulator: EmulatorServer, transfer_id: str) -> dict[str, Any]:
    status, body = emulator.request("GET", f"/v1/transfers/{transfer_id}", api_key=API_KEY)
    assert status == 200, body
    return body


def reverse(
    emulator: EmulatorServer, transfer_id: str, amount: int | None = None
) -> dict[str, Any]:
    params = {"amount": amount} if amount else {}
    status, body = emulator.request(
        "POST", f"/v1/transfers/{transfer_id}/reversals", params, api_key=API_KEY
    )
    assert status == 200, body
    return body


def paid_payout(emulator: EmulatorServer, amount: int = 5_000) -> tuple[Any, Payout]:
    payee = make_payee("restaurant", balance=amount)
    payouts_schedule(payee_ids=[key(payee)])
    payout = Payout.objects.get(payee_address=payee.ledger_address)
    assert payout.state == "paid"
    return payee, payout


def submitted_payout(
    emulator: EmulatorServer, monkeypatch: Any, amount: int = 5_000
) -> tuple[Any, Payout]:
    """A payout whose worker died after recording the transfer, before settling."""
    payee = make_payee("restaurant", balance=amount)
    with monkeypatch.context() as m:
        m.setattr(driving, "step_settle", lambda *a, **k: (_ for _ in ()).throw(Crash()))
        with pytest.raises(Crash):
            payouts_schedule(payee_ids=[key(payee)])
    payout = Payout.objects.get(payee_address=payee.ledger_address)
    assert payout.state == "submitted"
    return payee, payout


def submitting_payout(
    emulator: EmulatorServer, monkeypatch: Any, amount: int = 5_000
) -> tuple[Any, Payout, str]:
    """A payout whose worker died after Stripe created the transfer, before recording it."""
    payee = make_payee("restaurant", balance=amount)
    with monkeypatch.context() as m:
        m.setattr(driving, "_record", lambda *a, **k: (_ for _ in ()).throw(Crash()))
        with pytest.raises(Crash):
            payouts_schedule(payee_ids=[key(payee)])
    payout = Payout.objects.get(payee_address=payee.ledger_address)
    assert payout.state == "submitting" and payout.transfer_id is None
    (transfer_id,) = [
        t["id"]
        for t in emulator.state.store.iter_kind("transfer")
        if t["metadata"].get("payout_id") == str(payout.pk)
    ]
    return payee, payout, transfer_id


def test_transfer_created_adopts_a_payout_left_submitting(
    emulator: EmulatorServer, monkeypatch: Any
) -> None:
    payee, payout, transfer_id = submitting_payout(emulator, monkeypatch)
    outcome = deliver("transfer.created", transfer(emulator, transfer_id))
    assert outcome.status == "processed"
    payout.refresh_from_db()
    assert payout.state == "paid" and payout.transfer_id == transfer_id
    assert bal(payee.ledger_address) == 0
    # a replay (another delivery, another event id for the same object) changes nothing
    assert deliver("transfer.created", transfer(emulator, transfer_id)).status == "processed"
    assert Transaction.objects.filter(reference=f"payout-settle:{payout.pk}").count() == 1
    assert emulator.transfer_counts() == {str(payout.pk): 1}
    assert_books([payee])


def test_transfer_created_for_a_paid_payout_needs_no_fetch(emulator: EmulatorServer) -> None:
    _payee, payout = paid_payout(emulator)
    before = emulator.api.stats["requests"]
    outcome = deliver("transfer.created", transfer(emulator, payout.transfer_id or ""))
    assert outcome.status == "processed"
    assert emulator.api.stats["requests"] == before + 1  # only the test's own GET


def test_transfers_that_are_not_payouts_are_ignored(emulator: EmulatorServer) -> None:
    foreign = {"id": "tr_foreign", "object": "transfer", "metadata": {"order_id": "9"}}
    assert deliver("transfer.created", foreign).status == "ignored"
    assert deliver("transfer.reversed", foreign).status == "ignored"
    assert deliver("transfer.updated", foreign).status == "ignored"
    bogus = {"id": "tr_x", "object": "transfer", "metadata": {"payout_id": "not-a-uuid"}}
    assert deliver("transfer.reversed", bogus).status == "ignored"


def test_full_reversal_of_a_submitted_payout_returns_it(
    emulator: EmulatorServer, monkeypatch: Any
) -> None:
    payee, payout = submitted_payout(emulator, monkeypatch)
    reversal = reverse(emulator, payout.transfer_id or "")
    # when
    outcome = deliver("transfer.reversed", transfer(emulator, payout.transfer_id or ""))
    # then: settled (the tr_ left), failed, and returned from stripe:balance (the trr_ came back)
    assert outcome.status == "processed", outcome
    payout.refresh_from_db()
    assert payout.state == "returned" and payout.amount_reversed == 5_000
    trail = list(payout.events.values_list("to_state", flat=True))
    assert trail[-2:] == ["failed", "returned"]
    settle = Transaction.objects.get(reference=f"payout-settle:{payout.pk}")
    back = Transaction.objects.get(reference=f"payout-return:{payout.pk}")
    assert settle.metadata["stripe_object"] == payout.transfer_id
    assert back.metadata["stripe_object"] == reversal["id"] and reversal["id"].startswith("trr_")
    assert back.metadata["flow"] == "payout-return"
    assert bal(payee.ledger_address) == 5_000 and bal(payout.account) == 0
    # a replay, and the driver, change nothing
    deliver("transfer.reversed", transfer(emulator, payout.transfer_id or ""))
    drive_until_done()
    assert bal(payee.ledger_address) == 5_000
    assert_books([payee])


def test_reversal_reported_before_the_transfer_was_recorded(
    emulator: EmulatorServer, monkeypatch: Any
) -> None:
    payee, payout, transfer_id = submitting_payout(emulator, monkeypatch)
    reverse(emulator, transfer_id)
    deliver("transfer.reversed", transfer(emulator, transfer_id))
    payout.refresh_from_db()
    assert payout.state == "returned" and payout.transfer_id == transfer_id
    assert bal(payee.ledger_address) == 5_000
    drive_until_done()
    assert emulator.transfer_counts() == {str(payout.pk): 1}
    assert_books([payee])


def test_partial_reversal_of_a_submitted_payout(emulator: EmulatorServer, monkeypatch: Any) -> None:
    payee, payout = submitted_payout(emulator, monkeypatch)
    reverse(emulator, payout.transfer_id or "", 1_200)
    deliver("transfer.reversed", transfer(emulator, payout.transfer_id or ""))
    payout.refresh_from_db()
    assert payout.state == "paid" and payout.amount_reversed == 1_200
    assert bal(payee.ledger_address) == 1_200
    assert Transaction.objects.filter(reference=f"payout-reversal:{payout.pk}:1200").exists()
    assert_books([payee])


def test_reversals_after_paid_are_returned_each_once(emulator: EmulatorServer) -> None:
    payee, payout = paid_payout(emulator)
    # when: two partial reversals, each event delivered twice
    reverse(emulator, payout.transfer_id or "", 1_000)
    first = transfer(emulator, payout.transfer_id or "")
    deliver("transfer.reversed", first)
    deliver("transfer.reversed", first)
    reverse(emulator, payout.transfer_id or "", 4_000)
    second = transfer(emulator, payout.transfer_id or "")
    deliver("transfer.reversed", second)
    deliver("transfer.reversed", first)  # a stale, late duplicate
    # then: the state stays paid (terminal), the payee got back exactly 5,000, two notes
    payout.refresh_from_db()
    assert payout.state == "paid" and payout.amount_reversed == 5_000
    assert bal(payee.ledger_address) == 5_000
    notes = payout.events.filter(from_state="paid", to_state="paid")
    assert notes.count() == 2
    assert_books([payee])


def test_connected_account_payout_failure(emulator: EmulatorServer, monkeypatch: Any) -> None:
    # given: a payout the connected account's own bank payout names, still submitted
    payee, payout = submitted_payout(emulator, monkeypatch)
    bank_payout = {
        "id": "po_test_1",
        "object": "payout",
        "status": "failed",
        "failure_code": "account_closed",
        "failure_message": "The bank account has been closed",
        "metadata": {"payout_id": str(payout.pk)},
    }
    # when
    outcome = deliver("payout.failed", bank_payout, account=payee.stripe_account_id)
    # then: the payee is held; the payout settled and failed; the money is NOT back on the
    # payee (it sits at its Stripe account): a retry is refused until the transfer is reversed
    assert outcome.status == "processed"
    payee.refresh_from_db()
    assert payee.payouts_on_hold
    payout.refresh_from_db()
    assert payout.state == "failed" and payout.needs_attention
    assert bal(payee.ledger_address) == 0 and bal(payout.account) == 0
    from payouts.errors import ReturnBlocked
    from payouts.services import payout_retry

    with pytest.raises(ReturnBlocked):
        payout_retry(payout_id=payout.pk, actor="staff:ann")
    # when staff reverse the transfer at Stripe, the webhook returns it
    reverse(emulator, payout.transfer_id or "")
    deliver("transfer.reversed", transfer(emulator, payout.transfer_id or ""))
    payout.refresh_from_db()
    assert payout.state == "returned"
    assert bal(payee.ledger_address) == 5_000
    assert_books([payee])


def test_connected_account_payout_without_our_id_holds_the_payee(emulator: EmulatorServer) -> None:
    payee, payout = paid_payout(emulator)
    outcome = deliver(
        "payout.canceled",
        {"id": "po_x", "object": "payout", "metadata": {}},
        account=payee.stripe_account_id,
    )
    assert outcome.status == "processed"
    payee.refresh_from_db()
    assert payee.payouts_on_hold
    assert PayeeHoldChange.objects.get().reason.startswith("connected account payout failed")
    payout.refresh_from_db()
    assert payout.state == "paid"


@pytest.mark.parametrize("foreign_id", ["po-not-a-uuid", "12345", "", "0" * 40])
def test_connected_account_payout_with_a_foreign_id_still_holds_the_payee(
    emulator: EmulatorServer, foreign_id: str
) -> None:
    # given: a bank payout whose metadata.payout_id is not one of our ids (set by someone else)
    payee, payout = paid_payout(emulator)
    # when
    outcome = deliver(
        "payout.failed",
        {"id": "po_y", "object": "payout", "metadata": {"payout_id": foreign_id}},
        account=payee.stripe_account_id,
    )
    # then: processed, the hold is kept (not rolled back by a failed lookup), our payout untouched
    assert outcome.status == "processed"
    payee.refresh_from_db()
    assert payee.payouts_on_hold
    assert PayeeHoldChange.objects.count() == 1
    payout.refresh_from_db()
    assert payout.state == "paid"


def test_platform_payouts_and_unknown_accounts_are_ignored(emulator: EmulatorServer) -> None:
    bank = {"id": "po_platform", "object": "payout", "metadata": {}}
    assert deliver("payout.failed", bank).status == "ignored"
    assert deliver("payout.failed", bank, account="acct_nobody").status == "ignored"
    assert not PayeeHoldChange.objects.exists()
