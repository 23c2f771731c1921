"""The staff dashboard in a real browser (Debian's Chromium through Playwright): sign-in per
role, search, the order timeline, a partial refund from preview to `succeeded` against the
Stripe emulator, four-eyes approval and the refusal of self-approval, a campaign's life, and
a Support user refused on a marketing page."""

from __future__ import annotations

import re
from typing import Any

from playwright.sync_api import expect

from marketplace.models import Campaign, Order, Refund
from marketplace.services.orders import order_place
from marketplace.services.parties import restaurant_onboard
from staff.roles import FINANCE, FINANCE_ADMIN, MARKETING, SUPPORT
from stripe_emulator import EmulatorServer
from tests.auth import make_user
from tests.browser.conftest import PASSWORD
from tests.marketplace.e2e import customer_pays, settle


def user(username: str, *roles: str) -> Any:
    return make_user(username, roles=list(roles), password=PASSWORD)


def paid_order(emulator: EmulatorServer, subtotal: int = 4000) -> Order:
    restaurant = restaurant_onboard(name="Pho 99", commission="15%")
    order, intent = order_place(
        restaurant_id=restaurant.pk,
        subtotal=subtotal,
        delivery_fee=600,
        customer_email="ada@example.com",
        customer_name="Ada Lovelace",
    )
    assert customer_pays(emulator, intent["id"])
    settle(emulator)
    order.refresh_from_db()
    assert order.status == Order.Status.PAID
    return order


def test_sign_in_per_role_and_support_is_refused_on_a_marketing_page(person: Any) -> None:
    # given: one user per role
    for name, role in (
        ("sue", SUPPORT),
        ("mia", MARKETING),
        ("fin", FINANCE),
        ("adm", FINANCE_ADMIN),
    ):
        user(name, role)
    navs = {
        "sue": ("Orders", "Approvals"),
        "mia": ("Orders", "Campaigns"),
        "fin": ("Orders", "Approvals", "Campaigns", "Audit"),
        "adm": ("Orders", "Approvals", "Campaigns", "Audit"),
    }
    for name, links in navs.items():
        # when
        staff = person(name)
        staff.sign_in()
        # then: signed in, and the menu shows what the role may open
        expect(staff.page.get_by_test_id("who")).to_have_text(name)
        nav = staff.page.locator("header nav")
        for link in ("Orders", "Approvals", "Campaigns", "Audit"):
            expect(nav.get_by_role("link", name=link)).to_have_count(1 if link in links else 0)
    # and a wrong password is refused with a message
    stranger = person("sue")
    stranger.go("/staff/login/")
    stranger.page.get_by_label("Username").fill("sue")
    stranger.page.get_by_label("Password").fill("wrong")
    stranger.page.get_by_role("button", name="Sign in").click()
    expect(stranger.page.get_by_role("alert")).to_contain_text("username and password")
    # and Support typing a marketing page's address is refused by the server
    sue = person("sue")
    sue.sign_in()
    response = sue.go("/staff/campaigns/")
    assert response.status == 403
    expect(sue.page.get_by_role("alert")).to_contain_text("marketplace.view_campaign")


def test_search_and_the_order_timeline(person: Any, emulator: EmulatorServer) -> None:
    # given: an order paid through the emulator's signed webhooks
    order = paid_order(emulator)
    user("sue", SUPPORT)
    sue = person("sue")
    sue.sign_in()
    page = sue.page
    # when: an unknown term
    page.get_by_label("Search").fill("no-such-thing@example.com")
    page.get_by_label("Search").press("Enter")
    # then: a clear message
    expect(page.get_by_test_id("search-message")).to_contain_text("Nothing matches")
    # when: the PaymentIntent id
    page.get_by_label("Search").fill(order.payment_intent_id)
    page.get_by_label("Search").press("Enter")
    # then: straight to the order, whose one timeline has the status change, the Stripe
    # event with its processing status and the ledger's payment with its postings
    page.wait_for_url(re.compile(rf".*/staff/orders/{order.pk}/$"))
    expect(page.get_by_test_id("order-status")).to_have_text("paid")
    timeline = page.get_by_test_id("timeline")
    expect(timeline).to_contain_text("→ paid")
    expect(timeline).to_contain_text("Stripe payment_intent.succeeded")
    expect(timeline).to_contain_text(f"ledger payment:{order.charge_id}")
    expect(timeline.get_by_test_id("postings").first).to_contain_text(f"orders:{order.pk}")
    # and the customer's email finds the customer
    page.get_by_label("Search").fill("ada@example.com")
    page.get_by_label("Search").press("Enter")
    page.wait_for_url(re.compile(r".*/staff/customers/\d+/$"))
    expect(page.locator("main")).to_contain_text(
        f"/staff/orders/{order.pk}/".strip("/").split("/")[-1]
    )


def test_a_partial_refund_from_preview_to_succeeded(person: Any, emulator: EmulatorServer) -> None:
    # given
    order = paid_order(emulator)
    user("sue", SUPPORT)
    sue = person("sue")
    sue.sign_in()
    page = sue.page
    sue.go(f"/staff/orders/{order.pk}/")
    expect(page.get_by_test_id("refundable")).to_have_text("USD 46.00")
    # when: the dialog, a partial amount, the preview
    page.get_by_role("link", name="Refund…").click()
    page.get_by_label(re.compile("^Amount")).fill("12.50")
    page.get_by_label("Reason").select_option("requested_by_customer")
    page.get_by_label("Note").fill("cold food")
    page.get_by_role("button", name="Preview the postings").click()
    # then: the exact postings of the dry run, and nothing written yet
    postings = page.get_by_test_id("postings")
    expect(postings).to_contain_text(f"orders:{order.pk}")
    expect(postings).to_contain_text("stripe:balance")
    expect(postings).to_contain_text("USD 12.50")
    assert Refund.objects.filter(order=order).count() == 0
    # when: confirmed
    page.get_by_role("button", name=re.compile("Confirm the refund of USD 12.50")).click()
    # then: the refund's page follows it to succeeded without a reload
    page.wait_for_url(re.compile(r".*/staff/refunds/\d+/$"))
    expect(page.get_by_test_id("refund-status")).to_have_text("succeeded", timeout=30_000)
    expect(page.get_by_test_id("refund-stripe-id")).to_have_text(re.compile("^re_"))
    refund = Refund.objects.get(order=order)
    assert (refund.amount, refund.status, refund.requested_by.username) == (
        1250,
        "succeeded",
        "sue",
    )
    order.refresh_from_db()
    assert order.amount_refunded == 1250


def test_four_eyes_self_approval_refused_then_a_second_person_approves(
    person: Any, emulator: EmulatorServer
) -> None:
    # given: a Finance user requests a refund above the threshold (USD 50.00)
    order = paid_order(emulator, subtotal=9000)
    user("fin1", FINANCE)
    user("fin2", FINANCE)
    fin1 = person("fin1")
    fin1.sign_in()
    fin1.go(f"/staff/orders/{order.pk}/refund/")
    fin1.page.get_by_label(re.compile("^Amount")).fill("60.00")
    fin1.page.get_by_role("button", name="Preview the postings").click()
    expect(fin1.page.get_by_test_id("needs-approval")).to_be_visible()
    fin1.page.get_by_role("button", name=re.compile("Confirm the refund")).click()
    expect(fin1.page.get_by_test_id("refund-status")).to_have_text("awaiting approval")
    refund_url = fin1.page.url
    # when: the requester tries to approve it
    fin1.page.get_by_role("link", name="Approve…").click()
    fin1.page.get_by_role("button", name=re.compile("Confirm: approve")).click()
    # then: refused, with the reason, nothing sent
    expect(fin1.page.get_by_test_id("error")).to_contain_text("a different person must approve")
    refund = Refund.objects.get(order=order)
    assert refund.status == Refund.Status.AWAITING_APPROVAL and not refund.stripe_refund_id
    # when: a second person approves it from the approvals queue
    fin2 = person("fin2")
    fin2.sign_in()
    fin2.go("/staff/refunds/")
    fin2.page.get_by_test_id("approvals").get_by_role("link", name=str(refund.pk)).first.click()
    fin2.page.get_by_role("link", name="Approve…").click()
    fin2.page.get_by_label(re.compile("^Note")).fill("checked the ticket")
    fin2.page.get_by_role("button", name=re.compile("Confirm: approve")).click()
    # then: it goes to Stripe and succeeds, and the requester's open page follows it too
    expect(fin2.page.get_by_test_id("refund-status")).to_have_text("succeeded", timeout=30_000)
    fin1.page.goto(refund_url)
    expect(fin1.page.get_by_test_id("refund-status")).to_have_text("succeeded")
    refund.refresh_from_db()
    assert refund.decided_by.username == "fin2"


def test_a_campaign_created_funded_paused_and_closed(person: Any, browser_settings: Any) -> None:
    user("mia", MARKETING)
    mia = person("mia")
    mia.sign_in()
    page = mia.page
    # create
    mia.go("/staff/campaigns/")
    page.get_by_role("link", name="New campaign…").click()
    page.get_by_label("Code").fill("BROWSER10")
    page.get_by_label("Name").fill("Browser spring")
    page.get_by_label("Budget (USD)").fill("500")
    page.get_by_label("Percent off").fill("10%")
    page.get_by_label("Cap per order (USD)").fill("5")
    page.get_by_role("button", name="Review").click()
    page.get_by_role("button", name="Confirm: create BROWSER10").click()
    numbers = page.get_by_test_id("campaign-numbers")
    expect(numbers.locator("[data-k=budget]")).to_have_text("USD 500.00")
    expect(numbers.locator("[data-k=funded]")).to_have_text("USD 0.00")
    # fund: more than the budget is refused, then 200
    page.get_by_role("link", name="Fund…").click()
    page.get_by_label(re.compile("^Amount")).fill("600")
    page.get_by_role("button", name="Preview").click()
    expect(page.get_by_test_id("error")).to_contain_text("would exceed the budget")
    page.get_by_label(re.compile("^Amount")).fill("200")
    page.get_by_role("button", name="Preview").click()
    expect(page.get_by_test_id("postings")).to_contain_text("coupons:BROWSER10")
    page.get_by_role("button", name=re.compile("Confirm: fund BROWSER10")).click()
    expect(numbers.locator("[data-k=funded]")).to_have_text("USD 200.00")
    expect(numbers.locator("[data-k=remaining]")).to_have_text("USD 200.00")
    expect(page.get_by_test_id("spend-chart").locator("svg")).to_have_count(1)
    # pause, resume
    page.get_by_role("link", name="Pause…").click()
    page.get_by_role("button", name="Confirm: pause BROWSER10").click()
    expect(page.get_by_test_id("campaign-state")).to_have_text("paused")
    page.get_by_role("link", name="Resume…").click()
    page.get_by_role("button", name="Confirm: resume BROWSER10").click()
    expect(page.get_by_test_id("campaign-state")).to_have_text("active")
    # close: the remaining balance goes back to the marketing budget
    page.get_by_role("link", name="Close…").click()
    expect(page.get_by_test_id("postings")).to_contain_text("USD 200.00")
    page.get_by_role("button", name="Confirm: close BROWSER10").click()
    expect(page.get_by_test_id("campaign-state")).to_have_text("closed")
    expect(numbers.locator("[data-k=remaining]")).to_have_text("USD 0.00")
    # and the list shows its numbers
    mia.go("/staff/campaigns/")
    row = page.locator("tr[data-code=BROWSER10]")
    expect(row).to_contain_text("closed")
    expect(row).to_contain_text("USD 200.00")
    assert Campaign.objects.get(code="BROWSER10").closed_at is not None
