"""Balance checkpoints (ledger/services/checkpoints.py): a past balance read from a checkpoint
plus bounded ranges equals the plain sum of the postings, whatever was back-dated, reverted or
committed late, in every asset, for accounts a run never saw; the watermark waits for open
transactions; rebuild and retention."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

import psycopg
import pytest
from django.core.management import call_command
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ledger.models import Checkpoint, CheckpointRun, Transaction
from ledger.selectors import (
    _volumes_by_account,
    balance_get,
    balance_sheet_get,
    balances_get,
    volumes_get,
)
from ledger.services import transaction_post, transaction_revert
from ledger.services.checkpoints import checkpoints_rebuild, checkpoints_run, watermark_get
from tests.ledger.helpers import p

pytestmark = pytest.mark.django_db

T0 = datetime(2024, 1, 1, tzinfo=UTC)
ACCOUNTS = ["world", "a", "b", "c:1", "c:2"]
ASSETS = ["USD/2", "EUR/2"]
UNBOUNDED: dict[str, int | None] = {a: None for a in ACCOUNTS}


def hour(n: int) -> datetime:
    return T0 + timedelta(hours=n)


def plain_balance(address: str, asset: str, at: datetime) -> int:
    """The plain sum of every posting up to `at`: the reference."""
    return volumes_get(address=address, asset=asset, end=at, end_inclusive=True).balance


def plain_balances(at: datetime) -> dict[str, dict[str, int]]:
    out: dict[str, dict[str, int]] = {}
    for (address, asset), vols in sorted(_volumes_by_account(pattern="**", at=at).items()):
        if vols.balance:
            out.setdefault(address, {})[asset] = vols.balance
    return out


def assert_same_as_plain(at: datetime) -> None:
    for address in ACCOUNTS:
        for asset in ASSETS:
            assert balance_get(address=address, asset=asset, at=at) == plain_balance(
                address, asset, at
            ), (address, asset, at)
    assert balances_get(pattern="**", at=at).accounts == plain_balances(at), at


def live_balances() -> dict[tuple[str, str], int]:
    """The non-zero balances the balance rows hold (what the write path keeps): the reference
    for the balance sheet now."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT a.address, b.asset, sum(b.input - b.output) FROM ledger_balance b "
            "JOIN ledger_account a ON a.id = b.account_id GROUP BY a.address, b.asset"
        )
        return {(a, asset): int(bal) for a, asset, bal in cursor.fetchall() if bal}


def sheet_balances(at: datetime | None = None) -> dict[tuple[str, str], int]:
    sheet = balance_sheet_get(at=at)
    return {(line.address, line.asset): line.balance for s in sheet.assets for line in s.lines}


def assert_sheet_now_is_live() -> None:
    with CaptureQueriesContext(connection) as queries:
        now = sheet_balances()
    assert now == live_balances()
    if CheckpointRun.objects.exists():  # read from the latest run, not the balance rows
        assert not any("ledger_balance" in q["sql"] for q in queries.captured_queries)
    # the non-zero balances of a pattern now, the same way (what is owed to whom reads them)
    for pattern, asset in (("**", None), ("*", None), ("c:*", None), ("**", "EUR/2")):
        every = balances_get(pattern=pattern, asset=asset).accounts
        expected = {
            address: {a: bal for a, bal in by.items() if bal}
            for address, by in every.items()
            if any(by.values())
        }
        assert balances_get(pattern=pattern, asset=asset, nonzero=True).accounts == expected


# --- the property --------------------------------------------------------------------------

post_op = st.tuples(
    st.just("post"),
    st.sampled_from(ACCOUNTS),
    st.sampled_from(ACCOUNTS),
    st.sampled_from(ASSETS),
    st.integers(1, 1000),
    st.integers(0, 40),  # effective hour: anywhere, before or after the checkpoints
)
revert_op = st.tuples(st.just("revert"), st.integers(0, 50), st.booleans())
checkpoint_op = st.tuples(
    st.just("checkpoint"),
    st.integers(0, 40),  # the run's instant
    st.integers(0, 3),  # how many of the latest transactions it leaves uncovered (in flight)
)
operation = st.one_of(post_op, post_op, revert_op, checkpoint_op)


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    operations=st.lists(operation, min_size=1, max_size=14),
    instants=st.lists(st.integers(-1, 42), min_size=1, max_size=4),
)
def test_checkpointed_balance_equals_the_plain_sum(operations, instants):
    # given: postings with random effective times, reverts, and checkpoint runs at random
    # instants interleaved with them (some leaving the latest transactions uncovered, as if
    # still in flight when the run started)
    with transaction.atomic():
        ids: list[int] = []
        for op in operations:
            if op[0] == "post":
                _, src, dst, asset, amount, at = op
                r = transaction_post(
                    postings=[p(src, dst, amount, asset)], timestamp=hour(at), overdraft=UNBOUNDED
                )
                ids.append(r.transaction.id)
            elif op[0] == "revert" and ids:
                _, k, original = op
                target = ids[k % len(ids)]
                if not Transaction.objects.filter(reverts_id=target).exists():
                    r = transaction_revert(
                        transaction_id=target, force=True, at_original_timestamp=original
                    )
                    ids.append(r.transaction.id)
            elif op[0] == "checkpoint":
                _, at, lag = op
                top = max(ids, default=0)
                checkpoints_run(at=hour(at), watermark=max(0, top - lag), prune=False)

        # then: at any instant, on a run's instant or between, before the first or after all
        for n in instants:
            assert_same_as_plain(hour(n))
        assert_same_as_plain(datetime.now(UTC) + timedelta(days=1))  # after the reverts
        # and: the balance sheet now is the balance rows, whatever the runs left uncovered
        assert_sheet_now_is_live()
        transaction.set_rollback(True)


# --- targeted ------------------------------------------------------------------------------


def test_a_transaction_backdated_before_a_checkpoint_is_counted():
    # given: a run at hour 10 covering everything so far
    transaction_post(postings=[p("world", "a", 100)], timestamp=hour(1))
    run = checkpoints_run(at=hour(10), prune=False)
    assert run.rows == 2  # a: 100, world: -100

    # when: a transaction dated hour 5 arrives after the run
    transaction_post(postings=[p("world", "a", 7)], timestamp=hour(5))

    # then: read from the run plus the late posting
    assert balance_get(address="a", asset="USD/2", at=hour(10)) == 107
    assert balance_get(address="a", asset="USD/2", at=hour(11)) == 107
    assert balance_get(address="a", asset="USD/2", at=hour(4)) == 100
    sheet = balances_get(pattern="*", at=hour(10))
    assert sheet.accounts == {"a": {"USD/2": 107}, "world": {"USD/2": -107}}

    # and: the next run folds it into the first one and covers it
    second = checkpoints_run(at=hour(20), prune=False)
    assert second.folded == 1
    row = Checkpoint.objects.get(run__at=hour(10), account__address="a")
    assert row.balance == 107
    assert set(CheckpointRun.objects.values_list("covers_tx_id", flat=True)) == {
        second.covers_tx_id
    }
    assert balance_get(address="a", asset="USD/2", at=hour(10)) == 107


def test_an_uncovered_transaction_committed_late_is_counted_once():
    # given: two transactions; the run covers only the first (the second still in flight)
    first = transaction_post(postings=[p("world", "a", 100)], timestamp=hour(1))
    transaction_post(postings=[p("world", "a", 5)], timestamp=hour(2))
    checkpoints_run(at=hour(3), watermark=first.transaction.id, prune=False)

    # then: the run holds 100, the read adds 5 once
    assert Checkpoint.objects.get(account__address="a").balance == 100
    assert balance_get(address="a", asset="USD/2", at=hour(3)) == 105
    assert balance_get(address="a", asset="USD/2", at=hour(1)) == 100

    # when: a later run covers it
    result = checkpoints_run(at=hour(4), prune=False)

    # then: folded into the earlier run, still counted once
    assert result.folded == 1
    assert Checkpoint.objects.get(run__at=hour(3), account__address="a").balance == 105
    assert balance_get(address="a", asset="USD/2", at=hour(3)) == 105
    assert balance_get(address="a", asset="USD/2", at=hour(5)) == 105


def test_a_back_dated_import_folds_into_each_later_run_once():
    # given: runs at hours 10, 20 and 30 covering a first posting
    first = transaction_post(postings=[p("world", "a", 1)], timestamp=hour(1))
    for at in (10, 20, 30):
        checkpoints_run(at=hour(at), watermark=first.transaction.id, prune=False)
    # when: an import back-dates orders between the runs (each order account funded and
    # drained in the same interval) and one posting after the last run, then a run folds them
    for h in (5, 15, 15, 25):
        transaction_post(postings=[p("world", "order", 40), p("order", "a", 40)], timestamp=hour(h))
    transaction_post(postings=[p("world", "b", 9)], timestamp=hour(35))
    result = checkpoints_run(at=hour(40), prune=False)

    # then: each run holds what precedes it, once; the order account, netting to zero in
    # every interval, gets no row from the fold
    assert result.folded == 9
    by_run = {
        (run_at, address): balance
        for run_at, address, balance in Checkpoint.objects.filter(
            run__at__lte=hour(30)
        ).values_list("run__at", "account__address", "balance")
    }
    assert {k: v for k, v in by_run.items() if k[1] == "a"} == {
        (hour(10), "a"): 41,
        (hour(20), "a"): 121,
        (hour(30), "a"): 161,
    }
    assert not [k for k in by_run if k[1] in ("order", "b")]
    for n in (4, 5, 10, 15, 29, 35, 40):
        assert_same_as_plain(hour(n))


def test_balance_sheet_now_is_the_balance_rows_with_future_back_dated_and_late_transactions():
    # given: no run yet (read from the balance rows)
    first = transaction_post(postings=[p("world", "a", 100), p("a", "b", 30)], timestamp=hour(1))
    assert_sheet_now_is_live()
    now = datetime.now(UTC)
    # a future-dated transaction, then a run now covering only the first (the rest in flight)
    transaction_post(postings=[p("world", "c:1", 9, "EUR/2")], timestamp=now + timedelta(days=30))
    transaction_post(postings=[p("b", "c:2", 4)], timestamp=now - timedelta(minutes=1))
    checkpoints_run(at=now, watermark=first.transaction.id, prune=False)
    assert_sheet_now_is_live()

    # when: after the latest run, back-dated before it, dated after it and far in the future
    transaction_post(postings=[p("a", "world", 7)], timestamp=hour(0))
    transaction_post(postings=[p("world", "b", 2)], timestamp=now + timedelta(seconds=1))
    transaction_post(postings=[p("c:1", "a", 5, "EUR/2")], timestamp=now + timedelta(days=400))

    # then: the sheet now counts each exactly once, balanced, from the run
    assert_sheet_now_is_live()
    assert sheet_balances()[("a", "USD/2")] == 63
    assert sheet_balances()[("c:1", "EUR/2")] == 4
    assert balance_sheet_get().at is None

    # and: once a later run (in the past of the future-dated ones) covers everything
    checkpoints_run(at=now + timedelta(seconds=2), prune=False)
    assert_sheet_now_is_live()
    # and: a run later than every transaction, and one before every transaction
    checkpoints_run(at=now + timedelta(days=500), prune=False)
    assert_sheet_now_is_live()
    CheckpointRun.objects.exclude(at=hour(-5)).delete()
    checkpoints_run(at=hour(-5), prune=False)
    assert_sheet_now_is_live()


def test_accounts_and_assets_a_run_never_saw_and_zero_balances():
    # given: a nets to zero before the run (no row); b appears only after it
    transaction_post(postings=[p("world", "a", 50)], timestamp=hour(1))
    transaction_post(postings=[p("a", "world", 50)], timestamp=hour(2))
    checkpoints_run(at=hour(3), prune=False)
    transaction_post(postings=[p("world", "b", 9, "EUR/2")], timestamp=hour(4))

    # then
    assert not Checkpoint.objects.filter(account__address="a").exists()
    assert balance_get(address="a", asset="USD/2", at=hour(3)) == 0
    assert balance_get(address="b", asset="EUR/2", at=hour(4)) == 9
    assert balance_get(address="b", asset="EUR/2", at=hour(3)) == 0
    assert balance_get(address="nobody", asset="USD/2", at=hour(4)) == 0
    # only non-zero balances at an instant: USD/2 nets to zero everywhere
    assert balances_get(pattern="**", at=hour(5)).accounts == {
        "b": {"EUR/2": 9},
        "world": {"EUR/2": -9},
    }


def test_balance_sheet_as_of_a_date_is_the_same_with_and_without_checkpoints(settings):
    # given
    settings.LEDGER_CHART_OF_ACCOUNTS = [("world", "equity"), ("a", "asset"), ("**", "liability")]
    transaction_post(postings=[p("world", "a", 100), p("a", "b", 40)], timestamp=hour(1))
    transaction_post(postings=[p("world", "a", 3)], timestamp=hour(6))
    before = balance_sheet_get(at=hour(5))

    # when
    checkpoints_run(at=hour(2), prune=False)
    transaction_post(postings=[p("a", "b", 1)], timestamp=hour(2))  # back-dated onto the run

    # then
    after = balance_sheet_get(at=hour(5))
    assert [(line.address, line.balance) for line in after.assets[0].lines] == [
        ("a", 59),
        ("b", 41),
        ("world", -100),
    ]
    assert [(line.address, line.balance) for line in before.assets[0].lines] == [
        ("a", 60),
        ("b", 40),
        ("world", -100),
    ]
    assert after.balanced


def test_a_run_at_an_existing_instant_writes_nothing():
    transaction_post(postings=[p("world", "a", 1)], timestamp=hour(1))
    assert checkpoints_run(at=hour(2), prune=False).run_id is not None

    result = checkpoints_run(at=hour(2), prune=False)

    assert result.run_id is None
    assert CheckpointRun.objects.count() == 1


def test_retention_keeps_recent_runs_and_the_last_run_of_each_older_day(settings):
    # given: runs on two old days (three each) and two recent ones
    settings.LEDGER_CHECKPOINT_KEEP_HOURS = 48
    transaction_post(postings=[p("world", "a", 1)], timestamp=hour(0))
    now = datetime.now(UTC)
    old = [T0 + timedelta(days=d, hours=h) for d in (0, 1) for h in (1, 5, 23)]
    recent = [now - timedelta(hours=2), now - timedelta(hours=1)]
    for at in old + recent:
        checkpoints_run(at=at, prune=False)

    # when
    result = checkpoints_run(at=now, prune=True)

    # then
    assert result.pruned == 4
    kept = list(CheckpointRun.objects.order_by("at").values_list("at", flat=True))
    assert kept == [old[2], old[5], *recent, now]
    assert not Checkpoint.objects.exclude(run__in=CheckpointRun.objects.all()).exists()
    assert balance_get(address="a", asset="USD/2", at=T0 + timedelta(days=1, hours=6)) == 1


def test_rebuild_recomputes_every_run_from_the_postings():
    # given: runs, and a row damaged by hand (derived data: nothing else depends on it)
    transaction_post(postings=[p("world", "a", 10)], timestamp=hour(1))
    checkpoints_run(at=hour(2), prune=False)
    transaction_post(postings=[p("world", "a", 5)], timestamp=hour(3))
    checkpoints_run(at=hour(4), prune=False)
    Checkpoint.objects.filter(account__address="a").update(balance=999)

    # when
    assert checkpoints_rebuild() == 2

    # then
    rows = dict(Checkpoint.objects.filter(account__address="a").values_list("run__at", "balance"))
    assert rows == {hour(2): 10, hour(4): 15}


def test_rebuild_command(capsys):
    transaction_post(postings=[p("world", "a", 10)], timestamp=hour(1))
    call_command("ledger", "checkpoints", "run", "--at", hour(2).isoformat())
    call_command("ledger", "checkpoints", "rebuild")
    out = capsys.readouterr().out
    assert "rebuilt 1 checkpoint run" in out
    assert Checkpoint.objects.get(account__address="a").balance == 10


def test_the_watermark_waits_for_transactions_open_when_it_was_read():
    # given: another session holding an open transaction (as a writer between its id and its
    # commit)
    params = connection.get_connection_params()
    other = psycopg.connect(
        **{k: v for k, v in params.items() if k in ("dbname", "user", "host", "port", "password")}
    )
    try:
        other.execute("SELECT 1")  # opens its transaction (autocommit off)
        # then: the watermark is not given while it is open
        assert watermark_get(wait=0.2) is None
        # when: it ends
        other.rollback()
        # then
        assert watermark_get(wait=0.2) is not None
    finally:
        other.close()


def test_the_watermark_waits_in_a_thread_until_the_writer_commits():
    # given: the other session ends its transaction a little later
    params = connection.get_connection_params()
    other = psycopg.connect(
        **{k: v for k, v in params.items() if k in ("dbname", "user", "host", "port", "password")}
    )
    other.execute("SELECT 1")
    timer = threading.Timer(0.3, other.rollback)
    timer.start()
    try:
        # then: it waited for it rather than giving up
        assert watermark_get(wait=5.0) is not None
    finally:
        timer.join()
        other.close()


def test_task_runs_a_checkpoint():
    from ledger.tasks import ledger_checkpoint

    transaction_post(postings=[p("world", "a", 10)])
    run_id = ledger_checkpoint()
    assert run_id is not None
    assert Checkpoint.objects.filter(run_id=run_id).count() == 2


def test_checkpoints_leave_the_chain_and_the_ledger_untouched():
    # given: sealed transactions
    from ledger.services import chain_verify, transactions_seal
    from tests.ledger.helpers import table_counts

    transaction_post(postings=[p("world", "a", 10)], timestamp=hour(1))
    transaction_post(postings=[p("a", "b", 4)], timestamp=hour(2))
    transactions_seal()
    before = table_counts()

    # when: runs are written, folded into, rebuilt
    checkpoints_run(at=hour(1), prune=False)
    transaction_post(postings=[p("world", "b", 1)], timestamp=hour(0))
    transactions_seal()
    checkpoints_run(at=hour(3), prune=False)
    checkpoints_rebuild()

    # then: the chain verifies and only the one new transaction changed the ledger's tables
    report = chain_verify()
    assert report.ok
    after = table_counts()
    assert after["ledger_transaction"] == before["ledger_transaction"] + 1
    assert after["ledger_posting"] == before["ledger_posting"] + 1
