"""The books page as of a date, read from the balance checkpoints: the same lines, links and
amounts as the plain sum, a back-dated transaction included; and now, from the latest run: the
balance rows, with what was posted after the run (back-dated or future-dated) counted once."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta

import pytest
from django.db import connection

from ledger.domain import PostingInput
from ledger.services import transaction_post
from ledger.services.checkpoints import checkpoints_run
from staff.roles import FINANCE
from tests.staff.dashboard import signed_in

pytestmark = pytest.mark.django_db

_n = itertools.count()
DAY = datetime(2024, 5, 1, tzinfo=UTC)


def move(source: str, destination: str, amount: int, at: datetime) -> None:
    transaction_post(
        postings=[PostingInput(source, destination, "USD/2", amount)],
        overdraft={source: None},
        timestamp=at,
    )


def test_the_balance_sheet_as_of_a_date_reads_the_checkpoints(settings) -> None:
    # given: a run at noon, then a transaction back-dated to the morning of that day
    settings.LEDGER_SEAL_ON_COMMIT = False
    settings.LEDGER_CHART_OF_ACCOUNTS = [
        ("stripe:balance", "asset"),
        ("platform:*", "revenue"),
        ("restaurants:*", "liability"),
        ("world", "equity"),
    ]
    move("world", "stripe:balance", 10_000, DAY + timedelta(hours=8))
    move("stripe:balance", "restaurants:001", 8_000, DAY + timedelta(hours=9))
    move("stripe:balance", "platform:fees", 2_000, DAY + timedelta(hours=9))
    checkpoints_run(at=DAY + timedelta(hours=12), prune=False)
    move("restaurants:001", "platform:fees", 150, DAY + timedelta(hours=10))
    client, _ = signed_in(f"books{next(_n)}", roles=(FINANCE,))

    # when
    page = client.get("/staff/books/", {"at": DAY.date().isoformat()})

    # then: the lines of the plain sum, each linking to its account page
    assert page.status_code == 200
    html = page.content.decode()
    assert (
        '<tr><td>liability</td><td><a href="/staff/ledger/accounts/restaurants:001/">'
        '<code>restaurants:001</code></a></td><td class="num">USD 78.50</td>'
        '<td class="num"></td><td class="num">USD 78.50</td></tr>'
    ) in html
    assert '<code>platform:fees</code></a></td><td class="num">USD 21.50</td>' in html
    assert 'data-testid="balanced"' in html
    sheet = page.context["sheet"]
    lines = [(line.address, line.balance) for line in sheet.assets[0].lines]
    assert lines == [
        ("restaurants:001", 7_850),
        ("world", -10_000),
        ("platform:fees", 2_150),
    ]


def test_the_balance_sheet_now_reads_the_latest_run_and_what_came_after(settings) -> None:
    # given: a run now, then a back-dated, a future-dated and a current transaction
    settings.LEDGER_SEAL_ON_COMMIT = False
    settings.LEDGER_CHART_OF_ACCOUNTS = [
        ("stripe:balance", "asset"),
        ("platform:*", "revenue"),
        ("restaurants:*", "liability"),
        ("world", "equity"),
    ]
    now = datetime.now(UTC)
    move("world", "stripe:balance", 10_000, DAY)
    move("stripe:balance", "restaurants:001", 8_000, DAY)
    checkpoints_run(at=now, prune=False)
    move("restaurants:001", "platform:fees", 150, DAY + timedelta(hours=1))
    move("restaurants:001", "platform:fees", 50, now + timedelta(days=3))
    move("stripe:balance", "platform:fees", 1_000, now + timedelta(seconds=1))
    client, _ = signed_in(f"books{next(_n)}", roles=(FINANCE,))

    # when
    page = client.get("/staff/books/")

    # then: every non-zero balance row, once
    assert page.status_code == 200
    sheet = page.context["sheet"]
    assert sheet.at is None and sheet.balanced
    shown = {(line.address, line.balance) for s in sheet.assets for line in s.lines}
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT a.address, sum(b.input - b.output) FROM ledger_balance b "
            "JOIN ledger_account a ON a.id = b.account_id GROUP BY a.address "
            "HAVING sum(b.input - b.output) <> 0"
        )
        assert shown == {(address, int(balance)) for address, balance in cursor.fetchall()}
    assert ("restaurants:001", 7_800) in shown
    assert ("platform:fees", 1_200) in shown
    assert '<code>platform:fees</code></a></td><td class="num">USD 12.00</td>' in (
        page.content.decode()
    )
