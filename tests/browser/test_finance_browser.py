"""Browser tests of the finance pages (Playwright + Debian's Chromium, marked `browser` by
conftest.py): the explorer from a pattern to an account to a transaction, a point-in-time
balance, the balance sheet balanced, a payee hold/release, a reconciliation run with a
problem found, its repair applied from the page and the re-run clean, the charts' SVG and
data points, the nightly report's e-mail with its CSV, Support refused on every finance page."""

from __future__ import annotations

import functools
import itertools
import re
from datetime import timedelta
from typing import Any

from django.core import mail
from playwright.sync_api import expect

from ledger.domain import PostingInput
from ledger.services import transaction_post
from marketplace.services.parties import restaurant_onboard
from reconciliation.models import ReconciliationRun
from reconciliation.services import reconciliation_run
from staff.roles import FINANCE, SUPPORT
from tests.auth import make_user
from tests.browser.conftest import PASSWORD
from tests.reconciliation.helpers import DAY, WINDOW, book_refund, stripe_bt, uid

_n = itertools.count(1)


def user(prefix: str, *roles: str) -> str:
    name = f"{prefix}{next(_n)}-{uid('u')[-4:]}"
    make_user(name, roles=list(roles), password=PASSWORD)
    return name


def move(source: str, destination: str, amount: int, **kw: Any) -> Any:
    return transaction_post(
        postings=[PostingInput(source, destination, "USD/2", amount)],
        overdraft={source: None},
        **kw,
    ).transaction


def test_explorer_pattern_to_account_to_transaction_and_a_point_in_time_balance(
    person: Any, browser_settings: Any
) -> None:
    # given an account with two postings a week apart
    tag = uid("bx")[-8:]
    address = f"shops:{tag}:main"
    move("world", address, 1500, timestamp=DAY, reference=f"browser-{tag}-1")
    move("world", address, 500, timestamp=DAY + timedelta(days=7), reference=f"browser-{tag}-2")
    staff = person(user("fin", FINANCE))
    staff.sign_in()

    # the pattern shows the tree with the balance
    staff.go(f"/staff/ledger/?pattern=shops:{tag}:*")
    expect(staff.page.get_by_test_id("tree")).to_contain_text("USD 20.00")
    staff.page.get_by_test_id("account-link").click()
    expect(staff.page.get_by_test_id("address")).to_have_text(address)
    rows = staff.page.get_by_test_id("running")
    expect(rows).to_have_text(["USD 20.00", "USD 15.00"])

    # a point-in-time balance between the two postings
    staff.page.get_by_label("Balance at").fill((DAY + timedelta(days=1)).date().isoformat())
    staff.page.get_by_role("button", name="Balance at").click()
    expect(staff.page.get_by_test_id("balance-at")).to_contain_text("USD 15.00")
    # a date in the future is a message, not a 500
    staff.page.get_by_label("Balance at").fill("2999-01-01")
    staff.page.get_by_role("button", name="Balance at").click()
    expect(staff.page.get_by_test_id("error")).to_contain_text("in the future")

    # to the transaction
    staff.go(f"/staff/ledger/accounts/{address}/")
    staff.page.get_by_test_id("tx-link").last.click()
    expect(staff.page.get_by_test_id("reference")).to_have_text(f"browser-{tag}-1")
    expect(staff.page.get_by_test_id("postings")).to_contain_text("world")


def test_the_balance_sheet_is_balanced(person: Any, browser_settings: Any) -> None:
    staff = person(user("fin", FINANCE))
    staff.sign_in()
    staff.go("/staff/books/")
    expect(staff.page.get_by_test_id("balanced")).to_be_visible()


def test_a_payee_hold_and_release(person: Any, browser_settings: Any) -> None:
    restaurant = restaurant_onboard(name=f"Hold {uid('h')}", with_stripe_account=False)
    staff = person(user("fin", FINANCE))
    staff.sign_in()
    for verb, reason in (("hold", "fraud review"), ("release", "cleared")):
        staff.go(f"/staff/payees/restaurant/{restaurant.pk}/{verb}/")
        staff.page.get_by_label("Reason").fill(reason)
        staff.page.get_by_role("button", name="Preview").click()
        expect(staff.page.get_by_test_id("summary")).to_contain_text(verb.capitalize())
        staff.page.get_by_role("button", name=f"Confirm: {verb}").click()
        expect(staff.page.locator(".msg.success")).to_contain_text(
            "held" if verb == "hold" else "released"
        )
        restaurant.refresh_from_db()
        assert restaurant.payouts_on_hold is (verb == "hold")


def test_a_run_with_a_problem_repaired_from_the_page_rerun_clean_and_charted(
    person: Any, browser_settings: Any, monkeypatch: Any
) -> None:
    # given a refund booked twice in the ledger (Stripe has it once): the run flags it
    from staff import finance_services

    now = DAY + timedelta(days=5)
    monkeypatch.setattr(
        finance_services,
        "reconciliation_run",
        functools.partial(reconciliation_run, import_from_stripe=False, now=now),
    )
    refund = uid("re")
    stripe_bt(refund, amount=-800, category="refund", txn=(txn := uid("txn")))
    book_refund(refund, 800, txn=txn)
    book_refund(refund, 800, txn=txn)
    run = reconciliation_run(
        window_start=WINDOW[0], window_end=WINDOW[1], import_from_stripe=False, now=now
    )
    staff = person(user("fin", FINANCE))
    staff.sign_in()

    # the run page lists it
    staff.go(f"/staff/reconciliation/{run.pk}/")
    expect(staff.page.get_by_test_id("items")).to_contain_text(refund)
    expect(staff.page.get_by_test_id("run-result")).to_have_text("needs attention")

    # the repair applied from the page
    staff.page.get_by_test_id("apply-repairs").click()
    staff.page.get_by_role("button", name="Preview").click()
    expect(staff.page.get_by_test_id("lines")).to_contain_text("revert_duplicates")
    staff.page.get_by_role("button", name="Confirm: apply repairs").click()
    expect(staff.page.locator(".msg.success")).to_contain_text("1 applied")
    expect(staff.page.get_by_test_id("problems")).to_have_text("0")

    # the re-run is clean
    staff.page.get_by_test_id("rerun").click()
    staff.page.get_by_role("button", name="Preview").click()
    staff.page.get_by_role("button", name="Confirm: re-run").click()
    expect(staff.page.get_by_test_id("run-result")).to_have_text("clean")
    assert ReconciliationRun.objects.order_by("-id").first().problems == 0  # type: ignore[union-attr]

    # the chart: an SVG with one dot per run and series
    staff.go("/staff/reconciliation/")
    chart = staff.page.get_by_test_id("recon-chart").locator("svg")
    expect(chart).to_be_visible()
    points = int(staff.page.get_by_test_id("recon-chart").get_attribute("data-points") or 0)
    assert points >= 2
    assert chart.locator(".dot").count() == 3 * points
    legend = chart.text_content() or ""
    assert "matched" in legend and "unexplained drift" in legend

    # and the nightly report of that run, e-mailed with its CSV
    browser_settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    browser_settings.RECONCILIATION_REPORT_RECIPIENTS = "finance@example.com"
    mail.outbox = []
    from reconciliation.delivery import report_send

    assert report_send(run_id=run.pk) == 1
    [message] = mail.outbox
    assert message.attachments[0][0].endswith(".csv")
    assert refund in message.attachments[0][1]


FINANCE_PAGES = [
    "/staff/ledger/",
    "/staff/ledger/accounts/world/",
    "/staff/ledger/transactions/1/",
    "/staff/books/",
    "/staff/books/income/",
    "/staff/books/owed/",
    "/staff/payouts/",
    "/staff/reconciliation/",
    "/staff/risk/",
]


def test_support_is_refused_on_every_finance_page(person: Any, browser_settings: Any) -> None:
    staff = person(user("sup", SUPPORT))
    staff.sign_in()
    expect(staff.page.locator("header nav")).not_to_contain_text("Ledger")
    for path in FINANCE_PAGES:
        response = staff.go(path)
        assert response.status == 403, path
        expect(staff.page.locator("main")).to_contain_text(re.compile("permission"))
