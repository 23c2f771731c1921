"""The finance pages' revert preview (the ledger's own dry run: what it shows is what the
revert writes) and the issue's "Bad input" list, page by page: a malformed pattern, a date in
the future or not a date, a transaction id that does not exist or exceeds bigint, a repair
applied twice, a revert of a reverted transaction. Each is a clear message and a 4xx, and
writes nothing; never a 500."""

from __future__ import annotations

import itertools
from datetime import timedelta
from typing import Any

import pytest

from audit.models import AuditEntry
from ledger.domain import PostingInput
from ledger.models import Posting, Transaction
from ledger.services import transaction_post
from reconciliation.models import ReconciliationItem, ReconciliationRun
from reconciliation.services import reconciliation_run
from staff.roles import FINANCE, FINANCE_ADMIN
from tests.reconciliation.helpers import DAY, WINDOW, book_refund, stripe_bt, uid
from tests.staff.dashboard import form_token, signed_in

pytestmark = pytest.mark.django_db
_n = itertools.count(1)
BIG = "99999999999999999999999"  # beyond bigint
JUST_BEYOND = str(2**63)


@pytest.fixture(autouse=True)
def _guards(stripe_atomic_violations: list[str], celery_eager: None, settings: Any) -> None:
    settings.LEDGER_SEAL_ON_COMMIT = False
    settings.STRIPE_API_KEY = "sk_test_finance"
    settings.STRIPE_API_BASE = "http://127.0.0.1:9"  # nothing listens: a stray call fails fast
    settings.STRIPE_MAX_NETWORK_RETRIES = 0


def finance() -> Any:
    return signed_in(f"finbad{next(_n)}", roles=(FINANCE,))[0]


def finance_admin() -> Any:
    return signed_in(f"fadminbad{next(_n)}", roles=(FINANCE_ADMIN,))[0]


def counts() -> tuple[int, int, int, int]:
    return (
        Transaction.objects.count(),
        Posting.objects.count(),
        AuditEntry.objects.count(),
        ReconciliationRun.objects.count(),
    )


def stored(tx_id: int) -> list[dict[str, Any]]:
    return [
        {
            "source": p.source.address,
            "destination": p.destination.address,
            "asset": p.asset,
            "amount": p.amount,
        }
        for p in Posting.objects.filter(transaction_id=tx_id)
        .select_related("source", "destination")
        .order_by("index")
    ]


def split(tag: str) -> Transaction:
    return transaction_post(
        postings=[
            PostingInput("world", f"orders:{tag}", "USD/2", 5000),
            PostingInput(f"orders:{tag}", f"restaurants:{tag}", "USD/2", 3750),
            PostingInput(f"orders:{tag}", f"riders:{tag}", "USD/2", 500),
            PostingInput(f"orders:{tag}", "platform:fees", "USD/2", 750),
        ],
        reference=f"split:{tag}",
    ).transaction


def preview_and_confirm(client: Any, tx_id: int, reason: str) -> tuple[Any, Any]:
    url = f"/staff/ledger/transactions/{tx_id}/revert/"
    preview = client.post(url, {"action": "preview", "reason": reason})
    assert preview.status_code == 200, preview.context.get("error")
    token = form_token(preview.content.decode())
    done = client.post(url, {"action": "confirm", "reason": reason, "token": token})
    return preview, done


# --- the revert preview is the ledger's dry run --------------------------------------------------


def test_the_revert_preview_is_exactly_what_the_revert_writes() -> None:
    # given a four-posting transaction
    tx = split(uid("p")[-8:])
    client = finance_admin()
    before = counts()

    # when previewed (nothing written) then confirmed
    url = f"/staff/ledger/transactions/{tx.pk}/revert/"
    preview = client.post(url, {"action": "preview", "reason": "order cancelled"})
    assert counts() == before
    token = form_token(preview.content.decode())
    client.post(url, {"action": "confirm", "reason": "order cancelled", "token": token})

    # then the revert holds exactly the previewed postings, in the previewed order
    revert = Transaction.objects.get(reverts_id=tx.pk)
    assert preview.context["postings"] == stored(revert.pk)
    assert len(stored(revert.pk)) == 4
    assert preview.context["postings"][0] == {
        "source": "platform:fees",
        "destination": f"orders:{tx.reference.split(':')[1]}",
        "asset": "USD/2",
        "amount": 750,
    }
    assert revert.metadata["reason"] == "order cancelled"


def test_reverting_a_revert_previews_what_it_writes_and_a_reverted_one_is_refused() -> None:
    # given a transaction reverted from the page
    tx = split(uid("rr")[-8:])
    client = finance_admin()
    preview_and_confirm(client, tx.pk, "wrong order")
    first = Transaction.objects.get(reverts_id=tx.pk)

    # when the revert itself is reverted (re-booking the original): preview == written
    preview, _ = preview_and_confirm(client, first.pk, "it was right after all")
    again = Transaction.objects.get(reverts_id=first.pk)
    assert preview.context["postings"] == stored(again.pk) == stored(tx.pk)
    assert any("itself reverts" in w for w in preview.context["warnings"])

    # and the reverted transaction cannot be reverted again: a message, nothing written
    before = counts()
    for reverted in (tx.pk, first.pk):
        page = client.post(
            f"/staff/ledger/transactions/{reverted}/revert/",
            {"action": "preview", "reason": "once more"},
        )
        assert page.status_code == 409
        assert "already reverted" in page.context["error"]
    assert counts() == before


def test_two_tabs_confirming_one_revert_revert_once() -> None:
    # given two previews of the same revert (two tabs, two tokens)
    tx = split(uid("tt")[-8:])
    client = finance_admin()
    url = f"/staff/ledger/transactions/{tx.pk}/revert/"
    tokens = [
        form_token(client.post(url, {"action": "preview", "reason": "dup"}).content.decode())
        for _ in range(2)
    ]

    # when both are confirmed
    first = client.post(url, {"action": "confirm", "reason": "dup", "token": tokens[0]})
    before = counts()
    second = client.post(url, {"action": "confirm", "reason": "dup", "token": tokens[1]})

    # then one revert; the second is told, nothing written
    assert first.status_code == 302
    assert second.status_code == 409
    assert "already reverted" in second.context["error"]
    assert counts() == before
    assert Transaction.objects.filter(reverts_id=tx.pk).count() == 1


def test_a_revert_the_ledger_would_refuse_is_refused_at_the_preview() -> None:
    # given the restaurant's share has left its account: the revert would overdraw it
    tag = uid("nf")[-8:]
    tx = split(tag)
    transaction_post(
        postings=[PostingInput(f"restaurants:{tag}", f"restaurants:{tag}:payouts:1", "USD/2", 3750)]
    )
    client = finance_admin()
    before = counts()

    # when
    page = client.post(
        f"/staff/ledger/transactions/{tx.pk}/revert/", {"action": "preview", "reason": "x"}
    )

    # then: the ledger's own refusal, no confirmation offered, nothing written
    assert page.status_code == 400
    assert page.context["error"] == (
        f"The ledger would refuse this revert as things stand: Insufficient funds on "
        f"restaurants:{tag} for USD/2: needs 3750, 0 available. Nothing was written."
    )
    assert 'name="token"' not in page.content.decode()
    assert counts() == before


# --- bad input: reads ----------------------------------------------------------------------------

BAD_READS = [
    # a malformed address pattern / address
    ("/staff/ledger/", {"pattern": "shops:***"}, 400, "pattern"),
    ("/staff/ledger/", {"pattern": "orders::1"}, 400, ""),
    ("/staff/ledger/accounts/a::b/", {}, 400, ""),
    # a date in the future or not a date, on every page that takes one
    ("/staff/ledger/accounts/shops:bad/", {"at": "2999-01-01"}, 400, "in the future"),
    ("/staff/ledger/accounts/shops:bad/", {"at": "31/12/2024"}, 400, "is not a date"),
    ("/staff/ledger/accounts/shops:bad/", {"start": "2999-01-01"}, 400, "in the future"),
    ("/staff/ledger/accounts/shops:bad/", {"end": "tomorrow"}, 400, "is not a date"),
    (
        "/staff/ledger/accounts/shops:bad/",
        {"start": "2024-05-02", "end": "2024-05-01"},
        400,
        "period is empty",
    ),
    ("/staff/books/", {"at": "2999-01-01"}, 400, "in the future"),
    ("/staff/books/", {"at": "not-a-date"}, 400, "is not a date"),
    ("/staff/books/", {"at": "2024-02-30"}, 400, "is not a date"),
    ("/staff/books/", {"at": "2999-01-01", "format": "csv"}, 400, "in the future"),
    ("/staff/books/income/", {"start": "2999-01-01"}, 400, "in the future"),
    ("/staff/books/income/", {"end": "\x00"}, 400, "nul character"),
    ("/staff/payouts/", {"since": "2999-01-01"}, 400, "in the future"),
    ("/staff/payouts/", {"until": "soon"}, 400, "is not a date"),
    ("/staff/payouts/", {"before": "9" * 30}, 400, "is not a date"),
    ("/staff/payouts/", {"payee": f"restaurant:{BIG}"}, 400, "write restaurant:"),
    ("/staff/payouts/", {"state": "lost"}, 400, "does not exist"),
    # a transaction id that does not exist or exceeds bigint
    ("/staff/ledger/transactions/999999999999/", {}, 404, "no transaction"),
    (f"/staff/ledger/transactions/{JUST_BEYOND}/", {}, 404, "no transaction"),
    (f"/staff/ledger/transactions/{BIG}/", {}, 404, "no transaction"),
    (f"/staff/ledger/transactions/{BIG}/revert/", {}, 404, "nothing here"),
    ("/staff/ledger/transactions/-5/revert/", {}, 404, "nothing here"),
    # other ids beyond bigint or malformed
    (f"/staff/reconciliation/{BIG}/", {}, 404, "no reconciliation run"),
    (f"/staff/reconciliation/{JUST_BEYOND}/repairs/", {}, 404, "nothing here"),
    ("/staff/payouts/not-a-uuid/", {}, 404, "no payout"),
    ("/staff/payouts/not-a-uuid/retry/", {}, 404, "nothing here"),
    (f"/staff/payees/restaurant/{BIG}/hold/", {}, 404, "nothing here"),
]


@pytest.mark.parametrize(("path", "params", "status", "says"), BAD_READS)
def test_bad_input_on_a_finance_page_is_a_clear_4xx(
    path: str, params: dict[str, str], status: int, says: str
) -> None:
    transaction_post(postings=[PostingInput("world", "shops:bad", "USD/2", 10)])
    client = finance_admin()
    before = counts()
    page = client.get(path, params)
    assert page.status_code == status, page.content[:300]
    body = page.content.decode()
    if says:
        assert says.lower() in body.lower()
    assert counts() == before


@pytest.mark.parametrize("q", [BIG, JUST_BEYOND, "#" + BIG, "=", "ch_" + "x" * 300, "a=\x00"])
def test_a_search_for_nonsense_or_an_id_beyond_bigint_finds_nothing(q: str) -> None:
    client = finance()
    page = client.get("/staff/ledger/search/", {"q": q})
    assert page.status_code in (200, 400)
    if page.status_code == 200:
        assert page.context["found"] == []
    elif page.context is not None:  # an id beyond bigint: said so
        assert "There is no transaction" in page.context["error"]
    else:  # a NUL is refused before the view, with a message
        assert b"nul character" in page.content.lower()


@pytest.mark.parametrize("tx_id", [BIG, JUST_BEYOND, "0", "abc"])
def test_a_revert_of_a_transaction_that_does_not_exist_writes_nothing(tx_id: str) -> None:
    client = finance_admin()
    before = counts()
    for action in ("preview", "confirm"):
        page = client.post(
            f"/staff/ledger/transactions/{tx_id}/revert/",
            {"action": action, "reason": "x", "token": "forged"},
        )
        assert page.status_code == 404
    assert counts() == before


# --- a repair applied twice ----------------------------------------------------------------------


def test_a_repair_confirmed_from_two_tabs_is_applied_once() -> None:
    # given a run with one safe repair, previewed in two tabs (two tokens)
    refund = uid("re")
    stripe_bt(refund, amount=-800, category="refund", txn=(txn := uid("txn")))
    book_refund(refund, 800, txn=txn)
    book_refund(refund, 800, txn=txn)
    run = reconciliation_run(
        window_start=WINDOW[0],
        window_end=WINDOW[1],
        import_from_stripe=False,
        now=DAY + timedelta(days=5),
    )
    client = finance()
    url = f"/staff/reconciliation/{run.pk}/repairs/"
    tokens = [
        form_token(client.post(url, {"action": "preview"}).content.decode()) for _ in range(2)
    ]

    # when both are confirmed, one after the other
    first = client.post(url, {"action": "confirm", "token": tokens[0]})
    before = counts()
    second = client.post(url, {"action": "confirm", "token": tokens[1]})

    # then applied once; the second is told so and writes nothing
    assert first.status_code == 302
    assert second.status_code == 409
    assert "already applied" in second.context["error"]
    assert counts() == before
    assert ReconciliationItem.objects.filter(run=run, repair_status="applied").count() == 1
    assert AuditEntry.objects.filter(action="reconciliation.repairs").count() == 1


def test_a_rerun_when_stripe_is_unreachable_is_a_message_not_a_500() -> None:
    # given a run, and Stripe unreachable (STRIPE_API_BASE points at a closed port)
    run = reconciliation_run(
        window_start=WINDOW[0], window_end=WINDOW[1], import_from_stripe=False, now=DAY
    )
    client = finance()
    url = f"/staff/reconciliation/{run.pk}/rerun/"
    token = form_token(client.post(url, {"action": "preview"}).content.decode())

    # when
    page = client.post(url, {"action": "confirm", "token": token})

    # then a message (503: Stripe, not the input); the failed run is stored as failed (the
    # record of the attempt)
    assert page.status_code == 503
    assert "Stripe" in page.context["error"]
    latest = ReconciliationRun.objects.order_by("-id").first()
    assert latest is not None and latest.status == ReconciliationRun.Status.FAILED
