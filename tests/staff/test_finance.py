"""The finance pages (Staff dashboard II): ledger explorer, books, payouts board, reconciliation,
risk; their money actions (preview, confirmation, once, audited) and their bad input (a clear
message, nothing written, never a 500)."""

from __future__ import annotations

import itertools
import re
import threading
from datetime import timedelta
from typing import Any

import pytest
from django.db import connection
from django.utils import timezone

from audit.models import AuditEntry
from ledger.domain import PostingInput
from ledger.models import Transaction
from ledger.selectors import balance_get
from ledger.services import transaction_post
from marketplace.services.parties import restaurant_onboard
from payouts.models import Payout
from payouts.services import payout_create
from reconciliation.models import ReconciliationItem, ReconciliationRun
from reconciliation.services import reconciliation_run
from staff import ledger_explorer
from staff.roles import FINANCE, FINANCE_ADMIN, SUPPORT
from tests.reconciliation.helpers import (
    DAY,
    WINDOW,
    book_payment,
    book_refund,
    payment,
    stripe_bt,
    uid,
)
from tests.staff.dashboard import form_token, signed_in

pytestmark = pytest.mark.django_db
_n = itertools.count(1)


@pytest.fixture(autouse=True)
def _guards(stripe_atomic_violations: list[str], celery_eager: None, settings: Any) -> None:
    settings.LEDGER_SEAL_ON_COMMIT = False
    settings.STRIPE_API_KEY = "sk_test_finance"
    settings.STRIPE_API_BASE = "http://127.0.0.1:9"  # nothing listens: a stray call fails fast
    settings.STRIPE_MAX_NETWORK_RETRIES = 0


def finance() -> Any:
    return signed_in(f"fin{next(_n)}", roles=(FINANCE,))


def finance_admin() -> Any:
    return signed_in(f"fadmin{next(_n)}", roles=(FINANCE_ADMIN,))


def move(source: str, destination: str, amount: int, **kw: Any) -> Transaction:
    return transaction_post(
        postings=[PostingInput(source, destination, "USD/2", amount)],
        overdraft={source: None},
        **kw,
    ).transaction


# --- ledger explorer ---------------------------------------------------------------------------


def test_the_tree_groups_accounts_by_segment_with_balances_and_subtotals() -> None:
    # given two restaurants and a payout account
    tag = uid("r")
    move("world", f"shops:{tag}:a", 1000)
    move("world", f"shops:{tag}:b", 250)
    move(f"shops:{tag}:a", f"shops:{tag}:a:payouts:1", 300)
    client, _ = finance()

    # when the pattern is shown
    page = client.get("/staff/ledger/", {"pattern": f"shops:{tag}:**"})

    # then the tree has each node once, each account's balance and the subtotals
    assert page.status_code == 200
    tree = page.context["tree"]
    rows = {r.prefix: r for r in tree.rows}
    assert rows[f"shops:{tag}:a"].balances == {"USD/2": 700}
    assert rows[f"shops:{tag}:a"].subtotal == {"USD/2": 1000}
    assert rows[f"shops:{tag}"].subtotal == {"USD/2": 1250}
    assert not rows[f"shops:{tag}"].is_account
    assert tree.totals == {"USD/2": 1250}
    assert f"/staff/ledger/accounts/shops:{tag}:a:payouts:1/" in page.content.decode()


@pytest.mark.parametrize("pattern", ["shops:***", "a::b", "drop table;", "x" * 300])
def test_a_malformed_pattern_is_a_clear_400(pattern: str) -> None:
    client, _ = finance()
    page = client.get("/staff/ledger/", {"pattern": pattern})
    assert page.status_code == 400
    assert page.context["error"]


def test_the_account_page_pages_postings_newest_first_with_a_running_balance() -> None:
    # given an account with 7 postings over 7 days (in and out)
    tag = uid("acc")
    address = f"shops:{tag}"
    start = timezone.now() - timedelta(days=10)
    amounts = [1000, -200, 500, -50, 300, -1000, 75]
    for i, amount in enumerate(amounts):
        when = start + timedelta(days=i)
        if amount > 0:
            move("world", address, amount, timestamp=when)
        else:
            move(address, "world", -amount, timestamp=when)
    account = ledger_explorer.account_find(address=address)
    assert account is not None

    # when read 3 at a time
    first = ledger_explorer.account_postings(account=account, asset="USD/2", size=3)
    second = ledger_explorer.account_postings(
        account=account, asset="USD/2", cursor=first.next_cursor, size=3
    )
    third = ledger_explorer.account_postings(
        account=account, asset="USD/2", cursor=second.next_cursor, size=3
    )

    # then newest first, each row's balance after it, across pages
    rows = first.rows + second.rows + third.rows
    assert [r.amount if r.direction == "in" else -r.amount for r in rows] == amounts[::-1]
    running = list(itertools.accumulate(amounts))[::-1]
    assert [r.balance_after for r in rows] == running
    assert first.balance == sum(amounts) == 625
    assert third.next_cursor is None

    # and the page shows them, with a point-in-time balance and the volumes of a period
    client, _ = finance()
    day2 = (start + timedelta(days=1)).date().isoformat()
    page = client.get(f"/staff/ledger/accounts/{address}/", {"at": day2})
    assert page.status_code == 200
    assert page.context["balance_at"] == 800
    page = client.get(
        f"/staff/ledger/accounts/{address}/",
        {"start": start.date().isoformat(), "end": (start + timedelta(days=2)).date().isoformat()},
    )
    assert page.context["volumes"] == (1500, 200)


@pytest.mark.parametrize(
    "params",
    [{"at": "2999-01-01"}, {"at": "yesterday"}, {"start": "2024-13-40"}, {"cursor": "forged"}],
)
def test_bad_dates_and_cursors_on_the_account_page_are_a_clear_400(params: dict) -> None:
    move("world", "shops:dates", 10)
    client, _ = finance()
    page = client.get("/staff/ledger/accounts/shops:dates/", params)
    assert page.status_code == 400
    assert page.context["error"]


def test_the_transaction_page_shows_reference_times_metadata_seal_and_revert() -> None:
    # given a sealed transaction
    tx = move("world", "shops:txpage", 500, reference=uid("ref"), metadata={"order_id": "42"})
    from ledger.services.sealing import transactions_seal

    transactions_seal()
    client, _ = finance()

    page = client.get(f"/staff/ledger/transactions/{tx.pk}/")

    assert page.status_code == 200
    html = page.content.decode()
    assert tx.reference in html and "order_id" in html
    assert page.context["v"].seal.state == "sealed"
    assert page.context["can_revert"] is False  # Finance may not revert


@pytest.mark.parametrize(
    "tx_id", ["999999999999", "9223372036854775808", "99999999999999999999999", "abc", "-1"]
)
def test_a_transaction_that_does_not_exist_or_exceeds_bigint_is_a_404(tx_id: str) -> None:
    client, _ = finance()
    page = client.get(f"/staff/ledger/transactions/{tx_id}/")
    assert page.status_code == 404
    assert b"transaction" in page.content


def test_search_by_reference_metadata_and_stripe_id() -> None:
    charge = uid("ch")
    tx = move("world", "shops:search", 5, reference=uid("sref"), metadata={"stripe_object": charge})
    client, _ = finance()
    for q in (tx.reference, charge, f"stripe_object={charge}", str(tx.pk)):
        page = client.get("/staff/ledger/search/", {"q": q})
        assert page.status_code == 302, q
        assert page["Location"] == f"/staff/ledger/transactions/{tx.pk}/"
    assert client.get("/staff/ledger/search/", {"q": "nothing-like-this"}).status_code == 200


def test_revert_previews_confirms_once_and_audits_then_refuses_a_second_revert() -> None:
    # given a transaction and a Finance admin
    tx = move("world", "shops:rev", 700)
    client, user = finance_admin()
    url = f"/staff/ledger/transactions/{tx.pk}/revert/"

    # a reason is required
    assert client.post(url, {"action": "preview", "reason": ""}).status_code == 400
    # the preview shows the inverse postings and writes nothing
    preview = client.post(url, {"action": "preview", "reason": "booked twice"})
    assert preview.status_code == 200
    assert preview.context["postings"] == [
        {"source": "shops:rev", "destination": "world", "asset": "USD/2", "amount": 700}
    ]
    assert not Transaction.objects.filter(reverts_id=tx.pk).exists()
    token = form_token(preview.content.decode())

    # when confirmed twice (a double click)
    done = client.post(url, {"action": "confirm", "reason": "booked twice", "token": token})
    again = client.post(url, {"action": "confirm", "reason": "booked twice", "token": token})

    # then one revert, one audit row, the balance back to zero
    assert done.status_code == 302 and again.status_code == 302
    revert = Transaction.objects.get(reverts_id=tx.pk)
    assert revert.metadata["reason"] == "booked twice"
    assert balance_get(address="shops:rev", asset="USD/2") == 0
    rows = AuditEntry.objects.filter(action="ledger.revert", object_id=str(revert.pk))
    assert rows.count() == 1 and rows.get().actor_id == user.pk

    # and a revert of the reverted transaction is refused with a message, nothing written
    count = Transaction.objects.count()
    refused = client.post(url, {"action": "preview", "reason": "again"})
    assert refused.status_code == 409
    assert "already reverted" in refused.context["error"]
    assert Transaction.objects.count() == count


def test_finance_cannot_revert() -> None:
    tx = move("world", "shops:norev", 1)
    client, _ = finance()
    page = client.post(f"/staff/ledger/transactions/{tx.pk}/revert/", {"reason": "x"})
    assert page.status_code == 403
    assert not Transaction.objects.filter(reverts_id=tx.pk).exists()


# --- books ---------------------------------------------------------------------------------------


def test_the_balance_sheet_is_balanced_and_downloads_as_csv() -> None:
    charge, bt = payment(2000)
    book_payment(charge, 2000, bt["fee"], txn=bt["id"])
    client, _ = finance()

    page = client.get("/staff/books/")
    assert page.status_code == 200
    assert page.context["sheet"].balanced
    assert b'data-testid="balanced"' in page.content

    csv = client.get("/staff/books/", {"format": "csv"})
    assert csv["Content-Type"].startswith("text/csv")
    assert "stripe:balance" in csv.content.decode()
    assert ",check,balanced," in csv.content.decode()

    assert client.get("/staff/books/", {"at": "2999-01-01"}).status_code == 400
    assert client.get("/staff/books/", {"at": DAY.date().isoformat()}).status_code == 200


def test_income_statement_and_owed_with_csv() -> None:
    move("world", "platform:fees", 123)
    client, _ = finance()
    page = client.get("/staff/books/income/")
    assert page.status_code == 200
    assert any(s["revenue"] >= 123 for s in page.context["statement"])
    assert client.get("/staff/books/income/", {"format": "csv"})["Content-Type"].startswith(
        "text/csv"
    )
    assert (
        client.get("/staff/books/income/", {"start": "2024-05-02", "end": "2024-05-01"}).status_code
        == 400
    )
    assert client.get("/staff/books/owed/").status_code == 200
    assert b"group,accounts,owed" in client.get("/staff/books/owed/", {"format": "csv"}).content


# --- payouts -------------------------------------------------------------------------------------


def _payee_with_payout() -> tuple[Any, Payout]:
    restaurant = restaurant_onboard(name=f"Payee {next(_n)}", with_stripe_account=False)
    restaurant.stripe_account_id = uid("acct")
    restaurant.save(update_fields=["stripe_account_id"])
    move("stripe:balance", restaurant.ledger_address, 5000)
    payout = payout_create(kind="restaurant", payee_id=restaurant.pk, actor="test", drive=False)
    return restaurant, payout


def test_the_board_counts_filters_and_shows_the_oldest_in_flight() -> None:
    restaurant, payout = _payee_with_payout()
    client, _ = finance()
    page = client.get("/staff/payouts/", {"payee": f"restaurant:{restaurant.pk}"})
    assert page.status_code == 200
    assert [p.pk for p in page.context["rows"]] == [payout.pk]
    assert page.context["status"].by_state["reserved"]["count"] >= 1
    assert page.context["oldest_age"] is not None
    for bad in ({"payee": "bank:1"}, {"state": "lost"}, {"since": "2999-01-01"}):
        assert client.get("/staff/payouts/", bad).status_code == 400
    assert client.get(f"/staff/payouts/{payout.pk}/").status_code == 200
    assert client.get("/staff/payouts/not-a-uuid/").status_code == 404


def test_hold_cancels_reserved_payouts_once_and_release_is_audited() -> None:
    restaurant, payout = _payee_with_payout()
    client, _ = finance()
    url = f"/staff/payees/restaurant/{restaurant.pk}/hold/"
    preview = client.post(url, {"action": "preview", "reason": "fraud check"})
    assert preview.status_code == 200
    assert preview.context["postings"][0]["amount"] == 5000
    token = form_token(preview.content.decode())
    assert (
        client.post(url, {"action": "confirm", "reason": "fraud check", "token": token}).status_code
        == 302
    )
    client.post(url, {"action": "confirm", "reason": "fraud check", "token": token})
    restaurant.refresh_from_db()
    payout.refresh_from_db()
    assert restaurant.payouts_on_hold and payout.state == "returned"
    assert AuditEntry.objects.filter(action="payee.hold", object_id=str(restaurant.pk)).count() == 1
    assert balance_get(address=restaurant.ledger_address, asset="USD/2") == 5000
    # holding again is refused before any token
    assert client.post(url, {"action": "preview", "reason": "x"}).status_code == 400

    url = f"/staff/payees/restaurant/{restaurant.pk}/release/"
    token = form_token(
        client.post(url, {"action": "preview", "reason": "cleared"}).content.decode()
    )
    client.post(url, {"action": "confirm", "reason": "cleared", "token": token})
    restaurant.refresh_from_db()
    assert not restaurant.payouts_on_hold
    assert AuditEntry.objects.filter(action="payee.release").count() == 1


def test_a_paid_payout_cannot_be_cancelled_from_the_page() -> None:
    _, payout = _payee_with_payout()
    client, _ = finance()
    Payout.objects.filter(pk=payout.pk)  # reserved: cancel allowed, retry/reverse refused
    assert (
        client.post(
            f"/staff/payouts/{payout.pk}/retry/", {"action": "preview", "reason": "x"}
        ).status_code
        == 400
    )
    assert (
        client.post(
            f"/staff/payouts/{payout.pk}/reverse/", {"action": "preview", "reason": "x"}
        ).status_code
        == 400
    )
    token = form_token(
        client.post(
            f"/staff/payouts/{payout.pk}/cancel/", {"action": "preview", "reason": "x"}
        ).content.decode()
    )
    client.post(
        f"/staff/payouts/{payout.pk}/cancel/", {"action": "confirm", "reason": "x", "token": token}
    )
    payout.refresh_from_db()
    assert payout.state == "returned"
    assert AuditEntry.objects.filter(action="payout.cancel").count() == 1


# --- reconciliation ------------------------------------------------------------------------------


def _run() -> ReconciliationRun:
    return reconciliation_run(
        window_start=WINDOW[0],
        window_end=WINDOW[1],
        import_from_stripe=False,
        now=DAY + timedelta(days=5),
    )


def _duplicated_refund() -> str:
    refund = uid("re")
    stripe_bt(refund, amount=-800, category="refund", txn=(txn := uid("txn")))
    book_refund(refund, 800, txn=txn)
    book_refund(refund, 800, txn=txn)
    return refund


def test_runs_list_run_page_filters_csv_and_chart() -> None:
    refund = _duplicated_refund()
    charge, bt = payment(1500)
    book_payment(charge, 1500, bt["fee"], txn=bt["id"])
    run = _run()
    client, _ = finance()

    runs = client.get("/staff/reconciliation/")
    assert runs.status_code == 200
    assert "<svg" in runs.context["chart"]
    assert runs.context["points"][-1][1:3] == (1, 1)  # matched 1, mismatched 1

    page = client.get(f"/staff/reconciliation/{run.pk}/")
    assert page.status_code == 200
    assert [r["item"].stripe_object for r in page.context["items"]] == [refund]
    assert len(page.context["items"][0]["ledger_ids"]) == 2
    matched = client.get(f"/staff/reconciliation/{run.pk}/", {"outcome": "matched"})
    assert [r["item"].stripe_object for r in matched.context["items"]] == [charge]
    assert client.get(f"/staff/reconciliation/{run.pk}/", {"outcome": "bogus"}).status_code == 400
    csv = client.get(f"/staff/reconciliation/{run.pk}/", {"outcome": "problems", "format": "csv"})
    assert refund in b"".join(csv.streaming_content).decode()
    assert client.get("/staff/reconciliation/999999999/").status_code == 404


def test_safe_repairs_are_applied_once_from_the_page_and_the_rerun_is_clean(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # (the re-run reads the stored balance transactions: no Stripe here; the browser test
    # re-runs against the emulator)
    import functools

    from staff import finance_services

    monkeypatch.setattr(
        finance_services,
        "reconciliation_run",
        functools.partial(
            reconciliation_run, import_from_stripe=False, now=DAY + timedelta(days=5)
        ),
    )
    _duplicated_refund()
    run = _run()
    client, _ = finance()
    url = f"/staff/reconciliation/{run.pk}/repairs/"

    preview = client.post(url, {"action": "preview"})
    assert preview.status_code == 200
    assert "revert_duplicates" in preview.context["lines"][0]
    token = form_token(preview.content.decode())
    client.post(url, {"action": "confirm", "token": token})
    client.post(url, {"action": "confirm", "token": token})  # double submit

    run.refresh_from_db()
    assert run.problems == 0 and run.repairs["applied"] == 1
    assert AuditEntry.objects.filter(action="reconciliation.repairs").count() == 1
    # a second preview (another tab) is refused: nothing pending
    assert client.post(url, {"action": "preview"}).status_code == 409

    # re-run from the page: a new run, clean
    rerun = f"/staff/reconciliation/{run.pk}/rerun/"
    token = form_token(client.post(rerun, {"action": "preview"}).content.decode())
    done = client.post(rerun, {"action": "confirm", "token": token})
    new = ReconciliationRun.objects.order_by("-id").first()
    assert new is not None and new.pk != run.pk
    assert done["Location"] == f"/staff/reconciliation/{new.pk}/"
    assert new.problems == 0 and new.previous_run_id == run.pk


@pytest.mark.django_db(transaction=True)
def test_two_people_applying_repairs_at_once_apply_them_once() -> None:
    from staff.finance_services import RepairsBusy, repairs_apply_once

    _duplicated_refund()
    run = _run()
    # given someone else holds the run's repair lock (their click is being applied)
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_try_advisory_lock(%s, %s)", [0x5EC0, run.pk])
    results: list[Any] = []

    def other() -> None:
        try:
            results.append(repairs_apply_once(run_id=run.pk, actor="other"))
        except RepairsBusy as exc:
            results.append(exc)
        finally:
            from django.db import connections

            connections.close_all()

    thread = threading.Thread(target=other)
    thread.start()
    thread.join()
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_advisory_unlock(%s, %s)", [0x5EC0, run.pk])

    assert isinstance(results[0], RepairsBusy)
    assert ReconciliationItem.objects.filter(run=run, repair_status="applied").count() == 0
    report = repairs_apply_once(run_id=run.pk, actor="me")
    assert report.applied == 1


# --- permissions ---------------------------------------------------------------------------------

FINANCE_PAGES = [
    "/staff/ledger/",
    "/staff/ledger/?pattern=**",
    "/staff/ledger/search/?q=x",
    "/staff/ledger/accounts/world/",
    "/staff/ledger/transactions/1/",
    "/staff/ledger/transactions/1/revert/",
    "/staff/books/",
    "/staff/books/?format=csv",
    "/staff/books/income/",
    "/staff/books/owed/",
    "/staff/payouts/",
    "/staff/payouts/00000000-0000-0000-0000-000000000000/",
    "/staff/payouts/00000000-0000-0000-0000-000000000000/cancel/",
    "/staff/payees/restaurant/1/hold/",
    "/staff/reconciliation/",
    "/staff/reconciliation/1/",
    "/staff/reconciliation/1/repairs/",
    "/staff/reconciliation/1/rerun/",
    "/staff/risk/",
]


def test_support_is_refused_on_every_finance_page() -> None:
    client, _ = signed_in(f"support{next(_n)}", roles=(SUPPORT,))
    for url in FINANCE_PAGES:
        for method in (client.get, client.post):
            page = method(url)
            assert page.status_code == 403, (url, page.status_code)
            assert b"permission" in page.content


def test_finance_pages_render_for_finance() -> None:
    client, _ = finance()
    for url in (
        "/staff/ledger/",
        "/staff/books/",
        "/staff/payouts/",
        "/staff/reconciliation/",
        "/staff/risk/",
    ):
        assert client.get(url).status_code == 200, url
    assert re.search(rb'href="/staff/ledger/"', client.get("/staff/").content)


def test_the_books_page_now_shows_the_ledgers_balance_sheet() -> None:
    from ledger.selectors import balance_sheet_get

    charge, bt = payment(1234)
    book_payment(charge, 1234, bt["fee"], txn=bt["id"])
    move("world", "platform:fees", 77)
    client, _ = finance()
    assert client.get("/staff/books/").context["sheet"] == balance_sheet_get()
