"""Staff reversal of a failed payout's transfer (`payout_reverse`, the API, the command), against
the Stripe emulator: the request is recorded and committed before Stripe is called with
`transfer-reversal:<payout id>`; the money comes back to the payee exactly once, whether this
call or the `transfer.reversed` webhook applies it first; lost answers and refusals change
nothing that cannot be explained."""

from __future__ import annotations

import getpass
from io import StringIO
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.core.management import CommandError, call_command
from rest_framework.test import APIClient

from ledger.models import Transaction
from payouts.errors import ReversalPending, ReversalRefused, TransitionRefused
from payouts.models import Payout, PayoutEvent
from payouts.services import payout_cancel, payout_reverse, payouts_schedule
from stripe_emulator import EmulatorServer
from stripe_gateway.client import StripeGateway
from stripe_gateway.errors import ProviderUnavailable
from tests.payouts.conftest import API_KEY
from tests.payouts.helpers import assert_books, bal, key, make_payee
from tests.payouts.test_webhooks import deliver, reverse, submitted_payout, transfer

pytestmark = pytest.mark.django_db

AMOUNT = 5_000


def failed_with_transfer(emulator: EmulatorServer, monkeypatch: Any) -> tuple[Any, Payout]:
    """A payout whose transfer reached the connected account, whose own bank payout then
    failed: the payout is failed, its money sits at the connected account."""
    payee, payout = submitted_payout(emulator, monkeypatch, AMOUNT)
    bank_payout = {
        "id": "po_test_closed",
        "object": "payout",
        "status": "failed",
        "failure_code": "account_closed",
        "metadata": {"payout_id": str(payout.pk)},
    }
    assert deliver("payout.failed", bank_payout, account=payee.stripe_account_id).status == (
        "processed"
    )
    payout.refresh_from_db()
    assert payout.state == "failed" and payout.transfer_id
    assert bal(payee.ledger_address) == 0
    return payee, payout


def reversals_at_stripe(emulator: EmulatorServer, transfer_id: str) -> list[dict[str, Any]]:
    return [
        r
        for r in emulator.state.store.iter_kind("transfer_reversal")
        if r["transfer"] == transfer_id
    ]


def key_used(emulator: EmulatorServer, payout: Payout) -> bool:
    record = emulator.state.store.kv_get("idempotency", f"{API_KEY}||transfer-reversal:{payout.pk}")
    return record is not None


def trail(payout: Payout) -> list[tuple[str, str, str]]:
    return [
        (e.from_state, e.to_state, e.actor)
        for e in PayoutEvent.objects.filter(payout=payout).order_by("id")
    ]


def chaos_on_reversals(emulator: EmulatorServer, payout: Payout, **rates: float) -> None:
    emulator.set_chaos(
        api_paths=(f"/v1/transfers/{payout.transfer_id}/reversals",),
        api_methods=("POST",),
        **rates,
    )


# --- the service --------------------------------------------------------------------------------
def test_reverse_returns_the_money_to_the_payee_once(
    emulator: EmulatorServer, monkeypatch: Any
) -> None:
    # given
    payee, payout = failed_with_transfer(emulator, monkeypatch)
    before = trail(payout)

    # when
    result = payout_reverse(payout_id=payout.pk, reason="bank account closed", actor="staff:ann")

    # then: reversed at Stripe once, with our key, and returned on the ledger
    assert (result.state, result.amount_reversed) == ("returned", AMOUNT)
    (reversal,) = reversals_at_stripe(emulator, payout.transfer_id or "")
    assert reversal["amount"] == AMOUNT
    assert reversal["metadata"] == {"payout_id": str(payout.pk), "payee": payee.ledger_address}
    assert key_used(emulator, payout)
    assert transfer(emulator, payout.transfer_id or "")["amount_reversed"] == AMOUNT
    back = Transaction.objects.get(reference=f"payout-return:{payout.pk}")
    assert back.metadata["stripe_object"] == reversal["id"]
    assert back.metadata["flow"] == "payout-return"
    assert bal(payee.ledger_address) == AMOUNT and bal(payout.account) == 0
    assert trail(payout) == [
        *before,
        ("failed", "failed", "staff:ann"),
        ("failed", "returned", "staff:ann"),
    ]
    note = PayoutEvent.objects.filter(payout=payout, to_state="failed").last()
    assert note is not None
    assert note.why == f"reversal of transfer {payout.transfer_id} requested: bank account closed"
    assert note.data == {
        "idempotency_key": f"transfer-reversal:{payout.pk}",
        "transfer": payout.transfer_id,
    }
    books = Transaction.objects.count()

    # when: Stripe's transfer.reversed webhook arrives
    outcome = deliver("transfer.reversed", transfer(emulator, payout.transfer_id or ""))

    # then: nothing more
    payout.refresh_from_db()
    assert outcome.status == "processed"
    assert Transaction.objects.count() == books
    assert bal(payee.ledger_address) == AMOUNT
    assert payout.amount_reversed == AMOUNT and len(trail(payout)) == len(before) + 2
    assert_books([payee])


def test_a_reversal_already_made_at_stripe_is_applied_not_repeated(
    emulator: EmulatorServer, monkeypatch: Any
) -> None:
    # given: someone reversed it in the Dashboard; the webhook has not arrived
    payee, payout = failed_with_transfer(emulator, monkeypatch)
    dashboard = reverse(emulator, payout.transfer_id or "")

    # when: Stripe refuses a second reversal; the lookup shows the first
    result = payout_reverse(payout_id=payout.pk, reason="bank account closed", actor="staff:ann")

    # then
    assert result.state == "returned"
    assert reversals_at_stripe(emulator, payout.transfer_id or "") == [dashboard]
    back = Transaction.objects.get(reference=f"payout-return:{payout.pk}")
    assert back.metadata["stripe_object"] == dashboard["id"]
    assert bal(payee.ledger_address) == AMOUNT
    assert_books([payee])


def test_an_answer_lost_after_stripe_reversed_is_resolved_by_the_lookup(
    emulator: EmulatorServer, monkeypatch: Any
) -> None:
    # given: Stripe reverses, then answers 500 (and would replay that 500 to the same key)
    payee, payout = failed_with_transfer(emulator, monkeypatch)
    chaos_on_reversals(emulator, payout, api_error_after_rate=1.0)

    # when
    result = payout_reverse(payout_id=payout.pk, reason="bank account closed", actor="staff:ann")

    # then
    assert result.state == "returned"
    assert len(reversals_at_stripe(emulator, payout.transfer_id or "")) == 1
    assert emulator.api.stats["chaos_errors_after"] == 1
    assert bal(payee.ledger_address) == AMOUNT
    assert_books([payee])


def test_an_unknown_outcome_changes_nothing_and_a_retry_uses_the_same_key(
    emulator: EmulatorServer, monkeypatch: Any
) -> None:
    # given: Stripe fails before doing anything
    payee, payout = failed_with_transfer(emulator, monkeypatch)
    chaos_on_reversals(emulator, payout, api_error_rate=1.0)
    books = Transaction.objects.count()

    # when
    with pytest.raises(ReversalPending) as pending:
        payout_reverse(payout_id=payout.pk, reason="bank account closed", actor="staff:ann")

    # then: still failed, the attempt on the audit trail, nothing booked
    payout.refresh_from_db()
    assert pending.value.code == "reversal_pending"
    assert (payout.state, payout.amount_reversed) == ("failed", 0)
    assert reversals_at_stripe(emulator, payout.transfer_id or "") == []
    assert Transaction.objects.count() == books
    last = PayoutEvent.objects.filter(payout=payout).order_by("id").last()
    assert last is not None and last.why.startswith("Stripe's answer to the reversal is unknown")

    # when: Stripe is back; staff try again
    emulator.set_chaos(api_error_rate=0.0)
    result = payout_reverse(payout_id=payout.pk, reason="again", actor="staff:ann")

    # then
    assert result.state == "returned"
    assert len(reversals_at_stripe(emulator, payout.transfer_id or "")) == 1
    assert key_used(emulator, payout)
    assert bal(payee.ledger_address) == AMOUNT
    assert_books([payee])


def test_a_refusal_changes_nothing_and_says_why(emulator: EmulatorServer, monkeypatch: Any) -> None:
    # given: the connected account paid its balance out: it cannot cover the reversal
    payee, payout = failed_with_transfer(emulator, monkeypatch)
    status, body = emulator.request(
        "POST",
        "/v1/payouts",
        {"amount": AMOUNT, "currency": "usd"},
        account=payee.stripe_account_id,
        api_key=API_KEY,
    )
    assert status == 200, body
    books = Transaction.objects.count()

    # when
    with pytest.raises(ReversalRefused) as refused:
        payout_reverse(payout_id=payout.pk, reason="bank account closed", actor="staff:ann")

    # then
    payout.refresh_from_db()
    assert refused.value.extra == {
        "transfer_id": payout.transfer_id,
        "stripe_code": "balance_insufficient",
    }
    assert (payout.state, payout.amount_reversed) == ("failed", 0)
    assert reversals_at_stripe(emulator, payout.transfer_id or "") == []
    assert Transaction.objects.count() == books
    assert bal(payee.ledger_address) == 0
    last = PayoutEvent.objects.filter(payout=payout).order_by("id").last()
    assert last is not None and last.why.startswith("Stripe refused the reversal")
    assert last.data["stripe_code"] == "balance_insufficient"


def test_when_the_lookup_fails_the_webhook_returns_the_money(
    emulator: EmulatorServer, monkeypatch: Any
) -> None:
    # given: the reversal goes through, the transfer lookup afterwards does not
    payee, payout = failed_with_transfer(emulator, monkeypatch)

    def unavailable(self: StripeGateway, transfer_id: str) -> dict[str, Any]:
        raise ProviderUnavailable("rate limited", operation="transfer_retrieve")

    with monkeypatch.context() as m:
        m.setattr(StripeGateway, "transfer_retrieve", unavailable)
        result = payout_reverse(payout_id=payout.pk, reason="bank closed", actor="staff:ann")

    # then: reversed at Stripe, not yet on the ledger
    (reversal,) = reversals_at_stripe(emulator, payout.transfer_id or "")
    assert (result.state, result.amount_reversed) == ("failed", 0)
    assert bal(payee.ledger_address) == 0
    last = PayoutEvent.objects.filter(payout=payout).order_by("id").last()
    assert last is not None
    assert last.why == (
        f"Stripe reversed the transfer ({reversal['id']}); the money returns with the "
        "transfer.reversed webhook"
    )

    # when: the webhook arrives
    outcome = deliver("transfer.reversed", transfer(emulator, payout.transfer_id or ""))

    # then
    payout.refresh_from_db()
    assert outcome.status == "processed"
    assert (payout.state, payout.amount_reversed) == ("returned", AMOUNT)
    assert bal(payee.ledger_address) == AMOUNT
    assert_books([payee])


@pytest.mark.parametrize("state", ["reserved", "paid", "returned", "failed without transfer"])
def test_only_a_failed_payout_with_its_transfer_can_be_reversed(
    emulator: EmulatorServer, state: str
) -> None:
    # given
    payee = make_payee("restaurant", balance=AMOUNT)
    payouts_schedule(payee_ids=[key(payee)], drive=state == "paid")
    payout = Payout.objects.get(payee_address=payee.ledger_address)
    if state == "returned":
        payout_cancel(payout_id=payout.pk, reason="x", actor="staff:ann")
    elif state == "failed without transfer":
        rows = Payout.objects.filter(pk=payout.pk)
        rows.update(state="submitting", idempotency_key=f"transfer:{payout.pk}")
        rows.update(state="failed")
    payout.refresh_from_db()
    events = PayoutEvent.objects.count()
    requests = emulator.api.stats["requests"]

    # when
    with pytest.raises(TransitionRefused) as refused:
        payout_reverse(payout_id=payout.pk, reason="late", actor="staff:ann")

    # then: nothing written, Stripe not called
    expected = (
        "nothing was transferred"
        if state == "failed without transfer"
        else f"is {state}: only a failed payout whose transfer"
    )
    assert expected in refused.value.message
    assert refused.value.http_status == 409
    assert PayoutEvent.objects.count() == events
    assert emulator.api.stats["requests"] == requests
    assert Payout.objects.get(pk=payout.pk).state == payout.state


# --- the API and the command --------------------------------------------------------------------
@pytest.fixture
def manager() -> APIClient:
    user = get_user_model().objects.create_user("ops", password="x", is_staff=True)
    user.user_permissions.add(Permission.objects.get(codename="manage_payouts"))
    client = APIClient()
    client.force_authenticate(user)
    return client


def test_reverse_over_the_api(
    emulator: EmulatorServer, monkeypatch: Any, manager: APIClient
) -> None:
    # given
    payee, payout = failed_with_transfer(emulator, monkeypatch)
    url = f"/api/v1/payouts/{payout.pk}/reverse/"

    # when
    no_reason = manager.post(url, {}, format="json")
    response = manager.post(url, {"reason": "bank account closed"}, format="json")
    again = manager.post(url, {"reason": "bank account closed"}, format="json")

    # then
    assert no_reason.status_code == 400 and no_reason.json()["code"] == "invalid"
    assert response.status_code == 200
    body = response.json()
    assert (body["state"], body["amount_reversed"]) == ("returned", AMOUNT)
    assert body["events"][-1]["to_state"] == "returned"
    assert body["events"][-1]["actor"] == "staff:ops"
    assert again.status_code == 409 and again.json()["code"] == "transition_refused"
    assert len(reversals_at_stripe(emulator, payout.transfer_id or "")) == 1
    assert bal(payee.ledger_address) == AMOUNT


def test_reverse_needs_the_manage_permission(emulator: EmulatorServer, monkeypatch: Any) -> None:
    # given: staff without payouts.manage_payouts
    _payee, payout = failed_with_transfer(emulator, monkeypatch)
    user = get_user_model().objects.create_user("support", password="x", is_staff=True)
    viewer = APIClient()
    viewer.force_authenticate(user)

    # when
    response = viewer.post(f"/api/v1/payouts/{payout.pk}/reverse/", {"reason": "x"}, format="json")

    # then
    assert response.status_code == 403
    assert Payout.objects.get(pk=payout.pk).state == "failed"
    assert reversals_at_stripe(emulator, payout.transfer_id or "") == []


def test_reverse_command(emulator: EmulatorServer, monkeypatch: Any) -> None:
    # given
    payee, payout = failed_with_transfer(emulator, monkeypatch)
    out = StringIO()

    # when
    call_command("payouts", "reverse", str(payout.pk), "--reason", "bank closed", stdout=out)

    # then
    assert out.getvalue() == (
        f"payout {payout.pk}: transfer {payout.transfer_id} reversed, 50.00 USD back to "
        f"{payee.ledger_address}\n"
    )
    actors = PayoutEvent.objects.filter(payout=payout).values_list("actor", flat=True)
    # the command and the operator's shell account (no --as: nobody's permission to check)
    assert list(actors)[-2:] == [f"command:payouts reverse@{getpass.getuser()}"] * 2
    # and a second time: one line, non-zero exit
    with pytest.raises(CommandError, match="is returned: only a failed payout"):
        call_command("payouts", "reverse", str(payout.pk), "--reason", "bank closed")
    with pytest.raises(CommandError, match="--reason must not be empty"):
        call_command("payouts", "reverse", str(payout.pk), "--reason", " ")
