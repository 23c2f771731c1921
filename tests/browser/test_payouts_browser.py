"""Browser tests of the payout page's money actions that succeed (Playwright + Debian's
Chromium, marked `browser` by conftest.py), with the Stripe emulator as Stripe: a payout that
failed (Stripe refused its transfer) retried from its page and paid, and a payout whose money
reached the connected account but whose bank payout failed, its transfer reversed from the
page and the money back on the payee. Each: preview, confirmation, one audit row."""

from __future__ import annotations

import itertools
from typing import Any

import pytest
from playwright.sync_api import expect

from audit.models import AuditEntry
from ledger.selectors import balance_get
from ledger.services import transaction_post
from marketplace.services.parties import restaurant_onboard
from payouts.models import Payout
from payouts.services import driving, payout_create, payouts_schedule
from staff.roles import FINANCE
from stripe_emulator import EmulatorServer
from tests.auth import make_user
from tests.browser.conftest import PASSWORD
from tests.marketplace.e2e import settle
from tests.payouts.helpers import Crash
from tests.reconciliation.helpers import uid

AMOUNT = 5_000
API_KEY = "sk_test_browser"  # what tests/browser/conftest.py points the app at
_n = itertools.count(1)


@pytest.fixture
def payouts_settings(browser_settings: Any) -> Any:
    browser_settings.PAYOUTS_MIN_AMOUNT = 100
    browser_settings.PAYOUTS_ROLLING_RESERVE_BPS = 0
    return browser_settings


def user(prefix: str, *roles: str) -> str:
    name = f"{prefix}{next(_n)}-{uid('u')[-4:]}"
    make_user(name, roles=list(roles), password=PASSWORD)
    return name


def owed_restaurant(amount: int = AMOUNT) -> Any:
    """A restaurant onboarded at the emulator (its connected account), owed `amount`."""
    restaurant = restaurant_onboard(name=f"Payee {uid('p')}")
    assert restaurant.stripe_account_id
    transaction_post(
        postings=[
            {
                "source": "stripe:balance",
                "destination": restaurant.ledger_address,
                "asset": "USD/2",
                "amount": amount,
            }
        ],
        overdraft={"stripe:balance": None},
        metadata={"flow": "test-credit"},
    )
    return restaurant


def top_up(emulator: EmulatorServer, amount: int = 1_000_000) -> None:
    status, body = emulator.request(
        "POST", "/v1/topups", {"amount": amount, "currency": "usd"}, api_key=API_KEY
    )
    assert status == 200, body
    settle(emulator)


def confirm(staff: Any, action: str, reason: str) -> None:
    staff.page.get_by_role("link", name=action).click()
    staff.page.get_by_label("Reason").fill(reason)
    staff.page.get_by_role("button", name="Preview").click()


def test_a_failed_payout_retried_from_its_page_is_paid(
    person: Any, emulator: EmulatorServer, payouts_settings: Any
) -> None:
    # given a payout Stripe refused (the platform's Stripe balance was empty): failed, and its
    # money given back to the payee
    restaurant = owed_restaurant()
    failed = payout_create(kind="restaurant", payee_id=restaurant.pk, actor="scheduler")
    failed.refresh_from_db()
    assert failed.state == "returned" and failed.transfer_id is None
    assert failed.events.filter(to_state="failed").exists()
    assert "insufficient" in failed.last_error.lower()
    assert balance_get(address=restaurant.ledger_address, asset="USD/2") == AMOUNT
    # and the platform topped up since
    top_up(emulator)
    staff = person(user("fin", FINANCE))
    staff.sign_in()

    # when Finance retries it from the payout's page: previewed, then confirmed
    staff.go(f"/staff/payouts/{failed.pk}/")
    expect(staff.page.get_by_test_id("payout-state")).to_have_text("returned")
    confirm(staff, "Retry…", "platform topped up")
    expect(staff.page.get_by_test_id("summary")).to_contain_text(f"Retry payout {failed.account}")
    expect(staff.page.get_by_test_id("lines")).to_contain_text("a new payout is created")
    staff.page.get_by_role("button", name="Confirm: retry").click()

    # then a new payout, paid by one transfer at the emulator; the payee is owed nothing
    expect(staff.page.locator(".msg.success")).to_contain_text("(paid)")
    retried = Payout.objects.exclude(pk=failed.pk).get(payee_address=restaurant.ledger_address)
    assert (retried.state, retried.amount) == ("paid", AMOUNT)
    assert emulator.transfer_counts("payout_id") == {str(retried.pk): 1}
    assert balance_get(address=restaurant.ledger_address, asset="USD/2") == 0
    # and one audit row naming both, by the signed-in user
    [row] = AuditEntry.objects.filter(action="payout.retry")
    assert row.object_id == str(failed.pk)
    assert row.data["new_payout"] == str(retried.pk)
    assert staff.username in str(row.actor_label)


def test_a_payout_whose_bank_payout_failed_is_reversed_from_its_page(
    person: Any, emulator: EmulatorServer, payouts_settings: Any, monkeypatch: Any
) -> None:
    # given a payout whose transfer reached the connected account (its transfer.created
    # webhook dropped by the emulator, the worker dead before settling: submitted)
    top_up(emulator)
    restaurant = owed_restaurant()
    emulator.set_chaos(drop_rate=1.0)
    with monkeypatch.context() as m:
        m.setattr(driving, "step_settle", lambda *a, **k: (_ for _ in ()).throw(Crash()))
        with pytest.raises(Crash):
            payouts_schedule(payee_ids=[("restaurant", restaurant.pk)])
    assert emulator.flush(10)
    emulator.set_chaos(drop_rate=0.0)
    payout = Payout.objects.get(payee_address=restaurant.ledger_address)
    assert payout.state == "submitted" and payout.transfer_id
    # and the connected account's own payout to its bank failed (Stripe's payout.failed,
    # delivered to the app): our payout fails, its money still at the connected account
    account = restaurant.stripe_account_id
    status, bank = emulator.request(
        "POST",
        "/v1/payouts",
        {"amount": AMOUNT, "currency": "usd", "metadata": {"payout_id": str(payout.pk)}},
        account=account,
        api_key=API_KEY,
    )
    assert status == 200, bank
    status, body = emulator.request(
        "POST",
        f"/v1/test_helpers/payouts/{bank['id']}/failed",
        {"failure_code": "account_closed"},
        account=account,
        api_key=API_KEY,
    )
    assert status == 200, body
    settle(emulator)
    payout.refresh_from_db()
    assert payout.state == "failed" and payout.needs_attention
    assert balance_get(address=restaurant.ledger_address, asset="USD/2") == 0
    staff = person(user("fin", FINANCE))
    staff.sign_in()

    # when Finance reverses the transfer from the payout's page: previewed, then confirmed
    staff.go(f"/staff/payouts/{payout.pk}/")
    expect(staff.page.get_by_test_id("payout-state")).to_have_text("failed")
    expect(staff.page.get_by_test_id("transfer")).to_have_text(str(payout.transfer_id))
    confirm(staff, "Reverse transfer…", "bank account closed")
    expect(staff.page.get_by_test_id("summary")).to_contain_text(
        f"Reverse transfer {payout.transfer_id}"
    )
    expect(staff.page.get_by_test_id("postings")).to_contain_text(restaurant.ledger_address)
    staff.page.get_by_role("button", name="Confirm: reverse").click()

    # then reversed at the emulator once, the payout returned, the money back on the payee
    expect(staff.page.locator(".msg.success")).to_contain_text("the payout is returned")
    expect(staff.page.get_by_test_id("payout-state")).to_have_text("returned")
    reversals = [
        r
        for r in emulator.state.store.iter_kind("transfer_reversal")
        if r["transfer"] == payout.transfer_id
    ]
    assert [r["amount"] for r in reversals] == [AMOUNT]
    assert balance_get(address=restaurant.ledger_address, asset="USD/2") == AMOUNT
    payout.refresh_from_db()
    assert (payout.state, payout.amount_reversed) == ("returned", AMOUNT)
    # and one audit row with the reason, by the signed-in user
    [row] = AuditEntry.objects.filter(action="payout.reverse")
    assert row.object_id == str(payout.pk)
    assert row.data["reason"] == "bank account closed"
    assert staff.username in str(row.actor_label)
