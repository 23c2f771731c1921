"""Browser tests of the finance pages (Playwright + Debian's Chromium, marked `browser` by
conftest.py): the explorer from a pattern to an account to a transaction, a point-in-time
balance, the balance sheet balanced, a payee hold/release, a reconciliation run with a
webhook dropped by the Stripe emulator found, its repair (the event replayed) applied from
the page and the re-run clean, the charts' SVG and data points, the nightly report's e-mail
with its CSV, Support refused on every finance page."""

from __future__ import annotations

import itertools
import re
from datetime import UTC, datetime, timedelta
from typing import Any

from django.core import mail
from playwright.sync_api import expect

from audit.models import AuditEntry
from ledger.domain import PostingInput
from ledger.services import transaction_post
from marketplace.models import Order
from marketplace.services.orders import order_place
from marketplace.services.parties import restaurant_onboard
from reconciliation.delivery import report_send
from reconciliation.models import ReconciliationRun
from reconciliation.services import reconciliation_run
from staff.roles import FINANCE, SUPPORT
from stripe_emulator import EmulatorServer
from tests.auth import make_user
from tests.browser.conftest import PASSWORD
from tests.marketplace.e2e import customer_pays, settle
from tests.reconciliation.helpers import DAY, uid

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


def test_a_dropped_webhook_found_repaired_from_the_page_rerun_clean_charted_and_mailed(
    person: Any, emulator: EmulatorServer, browser_settings: Any, live_server: Any
) -> None:
    # given an order paid at the emulator, its signed webhooks delivered to the live server
    restaurant = restaurant_onboard(name=f"Pho {uid('r')}", with_stripe_account=False)
    first, intent = order_place(restaurant_id=restaurant.pk, subtotal=2000, delivery_fee=500)
    assert customer_pays(emulator, intent["id"])
    settle(emulator)
    first.refresh_from_db()
    assert first.status == Order.Status.PAID
    # and a second order whose every webhook the emulator drops (its chaos switch)
    emulator.set_chaos(drop_rate=1.0)
    second, intent = order_place(restaurant_id=restaurant.pk, subtotal=3100, delivery_fee=400)
    assert customer_pays(emulator, intent["id"])
    settle(emulator)
    emulator.set_chaos(drop_rate=0.0)
    assert emulator.stats()["webhooks"]["dropped"] > 0
    second.refresh_from_db()
    assert second.status != Order.Status.PAID
    charge = emulator.state.store.objects[intent["id"]]["latest_charge"]
    # and the night's run over the emulator's day (what beat runs: imported from Stripe)
    now = datetime.fromtimestamp(emulator.state.now(), tz=UTC)
    run = reconciliation_run(
        window_start=now - timedelta(hours=1), window_end=now + timedelta(hours=1), trigger="beat"
    )
    # and its report e-mailed (what the nightly task queues after the run): needs attention,
    # the run's CSV naming the missing charge, a link to the run's page
    browser_settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    browser_settings.RECONCILIATION_REPORT_RECIPIENTS = "finance@example.com"
    browser_settings.RECONCILIATION_REPORT_BASE_URL = staff_url = live_server.url
    mail.outbox = []
    assert report_send(run_id=run.pk) == 1
    [message] = mail.outbox
    assert message.subject.startswith("[NEEDS ATTENTION]")
    assert message.attachments[0][0].endswith(".csv")
    assert charge in message.attachments[0][1]
    html = str(message.alternatives[0][0])
    link = f"{staff_url}/staff/reconciliation/{run.pk}/"
    assert link in html
    staff = person(user("fin", FINANCE))
    staff.sign_in()

    # when Finance follows the e-mail's link: the missing payment is found
    staff.page.goto(link)
    expect(staff.page.get_by_test_id("run-result")).to_have_text("needs attention")
    items = staff.page.get_by_test_id("items")
    expect(items).to_contain_text(charge)
    expect(items).to_contain_text("never reached us")
    expect(staff.page.get_by_test_id("problems")).to_have_text("1")
    expect(staff.page.get_by_test_id("safe-pending")).to_have_text("1")

    # the safe repair is previewed (the event to replay), confirmed and applied from the page
    staff.page.get_by_test_id("apply-repairs").click()
    staff.page.get_by_role("button", name="Preview").click()
    lines = staff.page.get_by_test_id("lines")
    expect(lines).to_contain_text("replay_event")
    expect(lines).to_contain_text(charge)
    staff.page.get_by_role("button", name="Confirm: apply repairs").click()
    expect(staff.page.locator(".msg.success")).to_contain_text("1 applied, 0 failed")
    expect(staff.page.get_by_test_id("problems")).to_have_text("0")
    second.refresh_from_db()
    assert second.status == Order.Status.PAID and second.charge_id == charge
    assert AuditEntry.objects.filter(action="reconciliation.repairs").count() == 1

    # the re-run (imported from the emulator again) is clean
    staff.page.get_by_test_id("rerun").click()
    staff.page.get_by_role("button", name="Preview").click()
    staff.page.get_by_role("button", name="Confirm: re-run").click()
    expect(staff.page.get_by_test_id("run-result")).to_have_text("clean")
    expect(staff.page.get_by_test_id("unexplained")).to_have_text("USD 0.00")
    rerun = ReconciliationRun.objects.order_by("-id").first()
    assert rerun is not None and rerun.previous_run_id == run.pk
    assert rerun.counts == {"matched": 2} and rerun.problems == 0
    assert rerun.totals["USD/2"]["drift"] == 0

    # the runs list: the chart, an SVG with one dot per run and series
    staff.go("/staff/reconciliation/")
    chart = staff.page.get_by_test_id("recon-chart").locator("svg")
    expect(chart).to_be_visible()
    points = int(staff.page.get_by_test_id("recon-chart").get_attribute("data-points") or 0)
    assert points >= 2
    assert chart.locator(".dot").count() == 3 * points
    legend = chart.text_content() or ""
    assert "matched" in legend and "unexplained drift" in legend


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
