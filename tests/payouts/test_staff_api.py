"""Staff operations, through the services and the REST API: hold, release, cancel a reserved
payout, retry a failed one, run a pass, read status; permissions and error codes."""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from rest_framework.test import APIClient

from payouts.errors import TransitionRefused
from payouts.models import PayeeHoldChange, Payout
from payouts.services import (
    payee_hold,
    payee_release,
    payout_cancel,
    payout_retry,
    payouts_drive,
    payouts_schedule,
)
from stripe_emulator import EmulatorServer
from tests.payouts.helpers import assert_books, bal, key, make_payee

pytestmark = pytest.mark.django_db


@pytest.fixture
def manager() -> APIClient:
    user = get_user_model().objects.create_user("ops", password="x", is_staff=True)
    user.user_permissions.add(Permission.objects.get(codename="manage_payouts"))
    client = APIClient()
    client.force_authenticate(user)
    return client


@pytest.fixture
def viewer() -> APIClient:
    user = get_user_model().objects.create_user("support", password="x", is_staff=True)
    client = APIClient()
    client.force_authenticate(user)
    return client


def reserved(balance: int = 3_000, kind: str = "restaurant") -> tuple[Any, Payout]:
    payee = make_payee(kind, balance=balance)
    payouts_schedule(payee_ids=[key(payee)], drive=False)
    return payee, Payout.objects.get(payee_address=payee.ledger_address)


# --- services ---------------------------------------------------------------------------------
def test_cancel_a_reserved_payout(emulator: EmulatorServer) -> None:
    payee, payout = reserved()
    payout_cancel(payout_id=payout.pk, reason="wrong bank details", actor="staff:ann")
    payout.refresh_from_db()
    assert payout.state == "returned"
    event = payout.events.get(to_state="returned")
    assert event.actor == "staff:ann" and "wrong bank details" in event.why
    assert bal(payee.ledger_address) == 3_000 and bal(payout.account) == 0
    assert emulator.transfer_counts() == {}
    assert_books([payee])


@pytest.mark.parametrize("state", ["paid", "returned", "submitting"])
def test_cancel_is_refused_once_past_reserved(emulator: EmulatorServer, state: str) -> None:
    _payee, payout = reserved()
    if state == "paid":
        payouts_drive(ids=[payout.pk])
    elif state == "returned":
        payout_cancel(payout_id=payout.pk, reason="first", actor="staff:ann")
    else:
        Payout.objects.filter(pk=payout.pk).update(state="submitting", idempotency_key="k")
    with pytest.raises(
        TransitionRefused, match="only a reserved payout can be cancelled"
    ) as caught:
        payout_cancel(payout_id=payout.pk, reason="late", actor="staff:ann")
    payout.refresh_from_db()
    assert payout.state == state
    if state in ("paid", "submitting"):
        assert "the transfer may exist at Stripe" in caught.value.message


def test_hold_cancels_reserved_payouts_and_blocks_scheduling(emulator: EmulatorServer) -> None:
    payee, payout = reserved()
    cancelled = payee_hold(
        kind="restaurant", payee_id=payee.pk, reason="fraud check", actor="staff:ann"
    )
    assert [p.pk for p in cancelled] == [payout.pk]
    payout.refresh_from_db()
    assert payout.state == "returned"
    payee.refresh_from_db()
    assert payee.payouts_on_hold
    assert payouts_schedule(payee_ids=[key(payee)]).created == []
    payee_release(kind="restaurant", payee_id=payee.pk, reason="cleared", actor="staff:bob")
    result = payouts_schedule(payee_ids=[key(payee)])
    assert len(result.created) == 1
    assert Payout.objects.get(pk=result.created[0]).state == "paid"
    assert list(PayeeHoldChange.objects.order_by("id").values_list("on_hold", "actor")) == [
        (True, "staff:ann"),
        (False, "staff:bob"),
    ]


def test_retry_a_failed_payout(emulator: EmulatorServer) -> None:
    # given: a payout refused by Stripe (the account was gone), auto-returned, payee held
    payee = make_payee("restaurant", balance=2_000)
    good_account = payee.stripe_account_id
    type(payee).objects.filter(pk=payee.pk).update(stripe_account_id="acct_gone")
    payouts_schedule(payee_ids=[key(payee)])
    failed = Payout.objects.get()
    assert failed.state == "returned"
    # when: staff fix the account, release, retry
    type(payee).objects.filter(pk=payee.pk).update(stripe_account_id=good_account)
    payee_release(kind="restaurant", payee_id=payee.pk, reason="account fixed", actor="staff:ann")
    new = payout_retry(payout_id=failed.pk, actor="staff:ann")
    # then
    new.refresh_from_db()
    assert new.pk != failed.pk and new.seq == 2 and new.state == "paid"
    assert emulator.transfer_counts() == {str(new.pk): 1}
    assert bal(payee.ledger_address) == 0
    assert_books([payee])


def test_retry_is_only_for_failed_payouts(emulator: EmulatorServer) -> None:
    payee = make_payee("restaurant", balance=2_000)
    payouts_schedule(payee_ids=[key(payee)])
    with pytest.raises(TransitionRefused, match="only a failed payout can be retried"):
        payout_retry(payout_id=Payout.objects.get().pk, actor="staff:ann")
    _payee, cancelled = reserved()
    payout_cancel(payout_id=cancelled.pk, reason="x", actor="staff:ann")
    with pytest.raises(TransitionRefused):
        payout_retry(payout_id=cancelled.pk, actor="staff:ann")


# --- API ----------------------------------------------------------------------------------------
def test_list_detail_and_status(emulator: EmulatorServer, viewer: APIClient) -> None:
    payee = make_payee("restaurant", balance=1_234)
    payouts_schedule(payee_ids=[key(payee)])
    payout = Payout.objects.get()
    listed = viewer.get("/api/v1/payouts/", {"state": "paid"})
    assert listed.status_code == 200
    assert [row["id"] for row in listed.json()["results"]] == [str(payout.pk)]
    detail = viewer.get(f"/api/v1/payouts/{payout.pk}/").json()
    assert detail["amount"] == 1_234 and detail["transfer_id"] == payout.transfer_id
    assert [e["to_state"] for e in detail["events"]] == [
        "pending",
        "reserved",
        "submitting",
        "submitted",
        "paid",
    ]
    status = viewer.get("/api/v1/payouts/status/").json()
    assert status["states"]["paid"] == 1 and status["amounts"]["paid"] == {"USD/2": 1_234}


def test_api_errors_are_codes_not_500s(viewer: APIClient, manager: APIClient) -> None:
    assert viewer.get("/api/v1/payouts/", {"state": "nope"}).json()["code"] == "invalid"
    missing = viewer.get("/api/v1/payouts/01a1ffb5-cce5-7d89-92e3-93e4568343a9/")
    assert missing.status_code == 404 and missing.json()["code"] == "payout_not_found"
    assert viewer.get("/api/v1/payouts/not-a-uuid/").status_code == 404
    no_reason = manager.post("/api/v1/payouts/payees/restaurant/1/hold/", {}, format="json")
    assert no_reason.status_code == 400 and no_reason.json()["code"] == "invalid"
    bad_kind = manager.post("/api/v1/payouts/payees/bank/1/hold/", {"reason": "x"}, format="json")
    assert bad_kind.status_code == 404 and bad_kind.json()["code"] == "payee_not_found"
    nobody = manager.post(
        "/api/v1/payouts/payees/rider/999999/hold/", {"reason": "x"}, format="json"
    )
    assert nobody.status_code == 404 and nobody.json()["code"] == "payee_not_found"


def test_moving_money_needs_the_permission(emulator: EmulatorServer, viewer: APIClient) -> None:
    payee, payout = reserved()
    for url, body in [
        (f"/api/v1/payouts/{payout.pk}/cancel/", {"reason": "x"}),
        (f"/api/v1/payouts/{payout.pk}/retry/", {}),
        (f"/api/v1/payouts/payees/restaurant/{payee.pk}/hold/", {"reason": "x"}),
        (f"/api/v1/payouts/payees/restaurant/{payee.pk}/release/", {"reason": "x"}),
        ("/api/v1/payouts/run/", {}),
    ]:
        assert viewer.post(url, body, format="json").status_code == 403, url
    payout.refresh_from_db()
    assert payout.state == "reserved"
    assert APIClient().get("/api/v1/payouts/").status_code in (401, 403)


def test_staff_operations_over_the_api(emulator: EmulatorServer, manager: APIClient) -> None:
    payee, payout = reserved()
    # cancel
    response = manager.post(
        f"/api/v1/payouts/{payout.pk}/cancel/", {"reason": "dup"}, format="json"
    )
    assert response.status_code == 200 and response.json()["state"] == "returned"
    again = manager.post(f"/api/v1/payouts/{payout.pk}/cancel/", {"reason": "dup"}, format="json")
    assert again.status_code == 409 and again.json()["code"] == "transition_refused"
    # hold / release
    held = manager.post(
        f"/api/v1/payouts/payees/restaurant/{payee.pk}/hold/", {"reason": "kyc"}, format="json"
    )
    assert held.status_code == 200 and held.json()["on_hold"] is True
    run = manager.post("/api/v1/payouts/run/", {}, format="json").json()
    assert run["created"] == 0
    manager.post(
        f"/api/v1/payouts/payees/restaurant/{payee.pk}/release/", {"reason": "ok"}, format="json"
    )
    # run a pass
    run = manager.post("/api/v1/payouts/run/", {"kinds": ["restaurant"]}, format="json")
    assert run.status_code == 200
    body = run.json()
    assert body["created"] >= 1 and len(body["payout_ids"]) == body["created"]
    mine = Payout.objects.get(payee_address=payee.ledger_address, seq=2)
    assert mine.state == "paid"
    # retry of a paid payout is refused
    refused = manager.post(f"/api/v1/payouts/{mine.pk}/retry/", {}, format="json")
    assert refused.status_code == 409


@pytest.mark.parametrize("payee_id", ["\u00b2", "\u0661x", "-1", "1.5", " 1"])
def test_payouts_list_with_a_bad_payee_id_is_a_400(viewer: APIClient, payee_id: str) -> None:
    # when: str.isdigit() accepts "²", which int() refuses
    response = viewer.get("/api/v1/payouts/", {"payee_id": payee_id})
    # then
    assert response.status_code == 400
    assert "payee_id" in response.json()["errors"]
