"""Numscript runs without any read (PostgreSQL fast path, from a template's second run): the
interpreter speculates that every bounded source can pay, the write checks each source's
minimum under its row locks, and where one does not hold the script runs the ordinary way.
The product's own templates (marketplace/flows) are of this kind."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from django.conf import settings as django_settings
from django.db import connections

from ledger.errors import InsufficientFunds, ReferenceConflict, ScriptError
from ledger.models import Transaction
from ledger.selectors import balance_get
from ledger.services import script_reads, scripts, transaction_post
from tests.ledger.helpers import p
from tests.snapshots import db_snapshot

SPLIT = (Path(django_settings.BASE_DIR) / "marketplace" / "flows" / "split.num").read_text()
TAKE = "vars { account $s account $d monetary $m }\nsend $m ( source = $s destination = $d )"
INORDER = (
    "vars { account $a account $b account $d monetary $m }\n"
    "send $m ( source = { $a $b } destination = $d )"
)


@pytest.fixture(autouse=True)
def _fresh_read_plans():
    script_reads.forget_read_plans()
    yield
    script_reads.forget_read_plans()


def split_vars(order: str, amount: int = 1000) -> dict[str, str]:
    return {
        "amount": f"USD/2 {amount}",
        "delivery_fee": "USD/2 200",
        "order": order,
        "restaurant": "restaurants:1",
        "rider": "riders:1",
        "commission": "10%",
    }


@pytest.mark.django_db
def test_the_split_template_posts_without_reading_from_its_second_run(reads, speculative_writes):
    # given: three funded orders
    transaction_post(postings=[p("world", f"orders:{i}", 1000) for i in (1, 2, 3)])

    # when: the split template runs for each
    results = [transaction_post(script=SPLIT, vars=split_vars(f"orders:{i}")) for i in (1, 2, 3)]

    # then: the first run read the order's balance; the next two read nothing and their
    # writes checked the order's minimum (1000) under lock; every split is exact
    assert len(reads) == 1
    assert speculative_writes == [True, True]
    for i, result in zip((1, 2, 3), results, strict=True):
        assert [(x.destination, x.amount) for x in result.postings] == [
            ("riders:1", 200),
            ("platform:fees", 80),
            ("restaurants:1", 720),
        ]
        assert balance_get(address=f"orders:{i}", asset="USD/2") == 0


@pytest.mark.django_db
def test_the_split_templates_speculative_runs_are_the_generated_function(
    monkeypatch, speculative_writes
):
    # given: funded orders, and the interpreter counted where the speculative run calls it
    from ledger.numscript import compiled

    transaction_post(postings=[p("world", f"orders:{i}", 1000) for i in (1, 2, 3)])
    interpreted = []
    real_run = compiled.run

    def counted(*args, **kwargs):
        interpreted.append(args)
        return real_run(*args, **kwargs)

    monkeypatch.setattr(compiled, "run", counted)

    # when: the split template runs for each (from the second, speculatively)
    results = [transaction_post(script=SPLIT, vars=split_vars(f"orders:{i}")) for i in (1, 2, 3)]

    # then: both speculative writes held, and no speculative run needed the interpreter
    assert speculative_writes == [True, True]
    assert interpreted == []
    assert [(x.destination, x.amount) for x in results[2].postings] == [
        ("riders:1", 200),
        ("platform:fees", 80),
        ("restaurants:1", 720),
    ]
    # and a run the function cannot answer (a negative amount) gets the interpreter's error
    with pytest.raises(ScriptError, match="negative"):
        transaction_post(script=SPLIT, vars={**split_vars("orders:3"), "amount": "USD/2 -5"})
    assert len(interpreted) == 1


@pytest.mark.django_db
def test_an_underfunded_source_is_refused_with_its_real_balance_and_nothing_is_written(
    speculative_writes,
):
    # given: a learned template and an order holding 600 of the 1000 the split takes
    transaction_post(postings=[p("world", "orders:1", 1000), p("world", "orders:2", 600)])
    transaction_post(script=SPLIT, vars=split_vars("orders:1"))
    before = db_snapshot()

    # when / then: the speculative write fails its check, the ordinary run answers
    with pytest.raises(InsufficientFunds) as refused:
        transaction_post(script=SPLIT, vars=split_vars("orders:2"))
    assert refused.value.extra["account"] == "orders:2"
    assert refused.value.extra["available"] == 600
    assert speculative_writes == [False]
    assert db_snapshot() == before


@pytest.mark.django_db
def test_a_short_first_source_falls_back_to_the_real_split_between_sources(speculative_writes):
    # given: the template learned; then a holds 30 and b 100
    transaction_post(postings=[p("world", "a", 500), p("world", "b", 100)])
    vars_ = {"a": "a", "b": "b", "d": "shop", "m": "USD/2 400"}
    transaction_post(script=INORDER, vars=vars_)
    transaction_post(postings=[p("a", "world", 70)])
    assert balance_get(address="a", asset="USD/2") == 30

    # when: 100 is sent from { a b }
    result = transaction_post(script=INORDER, vars={**vars_, "m": "USD/2 100"})

    # then: speculating "a pays all" failed its check; the ordinary run took 30 + 70
    assert speculative_writes == [False]
    assert [(x.source, x.amount) for x in result.postings] == [("a", 30), ("b", 70)]
    assert balance_get(address="b", asset="USD/2") == 30


@pytest.mark.django_db
def test_a_template_that_needs_an_exact_balance_is_not_speculated_on_again(reads):
    # (a final `send [USD/2 *]` of one account is computed by the write itself: see the drain
    # tests; `balance()` needs the exact balance before anything is sent)
    sweep = (
        "vars { account $s account $d monetary $m = balance($s, USD/2) }\n"
        "send $m ( source = $s destination = $d )"
    )
    transaction_post(postings=[p("world", f"w:{i}", 10 * i) for i in (1, 2, 3, 4)])

    results = [
        transaction_post(script=sweep, vars={"s": f"w:{i}", "d": "shop"}) for i in (1, 2, 3, 4)
    ]

    assert [r.postings[0].amount for r in results] == [10, 20, 30, 40]
    plan = script_reads.read_plan(scripts.parse(sweep))
    assert plan is not None and plan.speculate is False
    # one read per run: the second run's speculation stopped at `[USD/2 *]` before any write
    assert len(reads) == 4


@pytest.mark.django_db
def test_a_reference_posted_before_is_replayed_or_refused_and_nothing_is_written_again(
    speculative_writes,
):
    transaction_post(postings=[p("world", "orders:1", 1000), p("world", "orders:2", 1000)])
    transaction_post(script=SPLIT, vars=split_vars("orders:1"))  # learns the template
    first = transaction_post(script=SPLIT, vars=split_vars("orders:2"), reference="split:2")
    before = db_snapshot()

    again = transaction_post(script=SPLIT, vars=split_vars("orders:2"), reference="split:2")
    with pytest.raises(ReferenceConflict):
        transaction_post(script=SPLIT, vars=split_vars("orders:2", amount=900), reference="split:2")

    assert again.replayed and again.transaction.pk == first.transaction.pk
    assert db_snapshot() == before
    assert Transaction.objects.filter(reference="split:2").count() == 1


@pytest.mark.django_db(transaction=True)
def test_two_writers_draining_one_account_never_take_it_below_zero():
    # given: the template learned, and an account that can pay 10 of the 20 runs below
    transaction_post(postings=[p("world", "warm", 100), p("world", "pot", 1000)])
    transaction_post(script=TAKE, vars={"s": "warm", "d": "sink", "m": "USD/2 100"})
    outcomes: list[str] = []
    lock = threading.Lock()

    def drain(w: int) -> None:
        try:
            for i in range(10):
                try:
                    transaction_post(
                        script=TAKE,
                        vars={"s": "pot", "d": f"sink:{w}", "m": "USD/2 100"},
                        reference=f"drain:{w}:{i}",
                    )
                    result = "ok"
                except InsufficientFunds:
                    result = "refused"
                with lock:
                    outcomes.append(result)
        finally:
            connections.close_all()

    # when: two writers drain it concurrently, 100 at a time
    threads = [threading.Thread(target=drain, args=(w,)) for w in (1, 2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)

    # then: exactly ten posts went through, the account is at 0, never below
    assert outcomes.count("ok") == 10 and outcomes.count("refused") == 10
    assert balance_get(address="pot", asset="USD/2") == 0
    assert (
        balance_get(address="sink:1", asset="USD/2") + balance_get(address="sink:2", asset="USD/2")
        == 1000
    )


@pytest.mark.django_db
def test_inside_a_callers_transaction_a_refused_write_leaves_the_transaction_usable(
    django_assert_max_num_queries,
):
    from django.db import connection, transaction
    from django.test.utils import CaptureQueriesContext

    # given: a learned template, an underfunded order, and a caller's transaction
    transaction_post(postings=[p("world", "orders:1", 1000), p("world", "orders:2", 600)])
    transaction_post(script=SPLIT, vars=split_vars("orders:1"))
    with transaction.atomic(), CaptureQueriesContext(connection) as queries:
        transaction_post(postings=[p("world", "orders:3", 1000)])
        # when: the split of the underfunded order is refused inside it
        with pytest.raises(InsufficientFunds):
            transaction_post(script=SPLIT, vars=split_vars("orders:2"))
        # then: the transaction goes on (no savepoint was needed), and commits what it did
        transaction_post(script=SPLIT, vars=split_vars("orders:3"))
    assert not [q for q in queries.captured_queries if "SAVEPOINT" in q["sql"]]
    assert balance_get(address="orders:3", asset="USD/2") == 0
    assert balance_get(address="orders:2", asset="USD/2") == 600
    assert balance_get(address="restaurants:1", asset="USD/2") == 720 * 2


@pytest.mark.django_db
def test_inside_a_callers_transaction_a_used_reference_replays_without_a_savepoint():
    from django.db import transaction

    transaction_post(postings=[p("world", "orders:1", 1000)])
    first = transaction_post(postings=[p("orders:1", "shop", 100)], reference="ref:1")
    with transaction.atomic():
        again = transaction_post(postings=[p("orders:1", "shop", 100)], reference="ref:1")
        with pytest.raises(ReferenceConflict):
            transaction_post(postings=[p("orders:1", "shop", 99)], reference="ref:1")
        transaction_post(postings=[p("orders:1", "shop", 1)])
    assert again.replayed and again.transaction.pk == first.transaction.pk
    assert balance_get(address="shop", asset="USD/2") == 101


@pytest.mark.django_db(transaction=True)
def test_inside_a_callers_transaction_a_reference_raced_by_a_concurrent_writer_is_replayed():
    import time

    from django.db import transaction

    # given: a writer that holds the reference, uncommitted, while we post the same request
    transaction_post(postings=[p("world", "orders:1", 1000)])
    holding = threading.Event()

    def first_writer() -> None:
        try:
            with transaction.atomic():
                transaction_post(postings=[p("orders:1", "shop", 100)], reference="race:1")
                holding.set()
                time.sleep(0.5)  # our insert waits on its unique index entry meanwhile
        finally:
            connections.close_all()

    other = threading.Thread(target=first_writer)
    other.start()
    assert holding.wait(10)

    # when: inside our own transaction, the same request is posted, then one more posting
    with transaction.atomic():
        result = transaction_post(postings=[p("orders:1", "shop", 100)], reference="race:1")
        transaction_post(postings=[p("orders:1", "shop", 1)])
    other.join(10)

    # then: ours is the replay of theirs (the unique violation rolled back only our call),
    # and our transaction went on and committed
    assert result.replayed
    assert Transaction.objects.filter(reference="race:1").count() == 1
    assert balance_get(address="shop", asset="USD/2") == 101


def _spec_cases() -> list[tuple[str, str, dict, dict]]:
    import json

    base = Path(django_settings.BASE_DIR)
    cases = []
    for spec in sorted(
        [
            *base.glob("marketplace/flows/*.num.specs.json"),
            *base.glob("payouts/flows/*.num.specs.json"),
        ]
    ):
        template = spec.with_name(spec.name.removesuffix(".specs.json"))
        data = json.loads(spec.read_text())
        for case in data["testCases"]:
            cases.append((template.name, template.read_text(), data.get("variables", {}), case))
    return cases


@pytest.mark.django_db
def test_every_flow_spec_case_posts_the_same_through_the_speculative_write(speculative_writes):
    from django.db import transaction

    from ledger.errors import LedgerError

    def attempt(script: str, vars_: dict) -> object:
        try:
            result = transaction_post(script=script, vars=vars_)
        except LedgerError as exc:
            return type(exc).__name__
        return [(x.source, x.destination, x.asset, x.amount) for x in result.postings]

    # For each case of the product's own flow specs, on the real ledger: the template learns on
    # a first run (rolled back), then runs again, without a read where it can: the outcome is
    # the spec's (postings and end balances, missing funds, or nothing to post).
    checked = 0
    for name, script, variables, case in _spec_cases():
        vars_ = {**variables, **case.get("variables", {})}
        with transaction.atomic():
            for row in case.get("balances", []):
                account, asset, amount = row["account"], row["asset"], row["amount"]
                if amount > 0:
                    transaction_post(postings=[p("world", account, amount, asset)])
                elif amount < 0:
                    transaction_post(
                        postings=[p(account, "world", -amount, asset)], overdraft={account: None}
                    )
            learned = transaction.savepoint()
            first = attempt(script, vars_)
            transaction.savepoint_rollback(learned)
            second = attempt(script, vars_)
            ends = {
                (x["account"], x["asset"]): balance_get(address=x["account"], asset=x["asset"])
                for x in case.get("expect.endBalances", [])
            }
            transaction.set_rollback(True)
        expected: object = [
            (x["source"], x["destination"], x["asset"], x["amount"])
            for x in case.get("expect.postings", [])
            if x["amount"] > 0
        ]
        if case.get("expect.error.missingFunds"):
            expected = "InsufficientFunds"
        elif not expected and "expect.postings" in case:
            expected = "InvalidTransaction"  # the ledger stores no empty transaction
        if "expect.postings" in case or isinstance(expected, str):
            assert first == second == expected, (name, case["it"])
        for x in case.get("expect.endBalances", []):
            assert ends[(x["account"], x["asset"])] == x["amount"], (name, case["it"], x)
        checked += 1
    assert checked >= 45
    # most second runs wrote without reading (the rest: the sweeps, and the cases whose source
    # is short, where the speculative write failed its check and the ordinary run answered)
    assert speculative_writes.count(True) >= 45


def test_a_guarded_failure_is_raised_as_the_error_of_its_sqlstate() -> None:
    from django.db import DataError as DjangoDataError
    from django.db import OperationalError, connections

    from ledger import writer
    from ledger.retry import is_retryable

    # what the client raises for a failure row of ledger_post_guarded: psycopg's class of the
    # SQLSTATE (Django maps it as a raised one), or a generic one carrying an unknown code
    for sqlstate, django_class in (("40P01", OperationalError), ("22003", DjangoDataError)):
        cls = writer._error_class(sqlstate)
        with pytest.raises(django_class) as raised, connections["default"].wrap_database_errors:
            raise cls("boom")
        assert raised.value.__cause__.sqlstate == sqlstate
        # a deadlock is retried by the outermost service, as when ledger_post raised it
        assert is_retryable(raised.value) is (sqlstate == "40P01")
    assert writer._error_class("LD002").sqlstate == "LD002"


def test_a_template_whose_speculative_writes_keep_failing_is_tried_only_now_and_then() -> None:
    program = scripts.parse(TAKE)
    script_reads._PLANS.put(program.source, script_reads.ReadPlan(metadata=(), balances=()))
    assert script_reads.should_speculate(program)

    # three failed checks in a row: the template runs the ordinary way...
    for _ in range(script_reads.SPECULATION_MISSES):
        script_reads.speculation_done(program, hit=False)
    tries = [script_reads.should_speculate(program) for _ in range(2 * 256)]
    # ...but for one speculative try every SPECULATION_RETRY runs
    assert tries.count(True) == 2 and tries.index(True) == script_reads.SPECULATION_RETRY - 1

    # a try that holds: speculating again on every run
    script_reads.speculation_done(program, hit=True)
    assert all(script_reads.should_speculate(program) for _ in range(5))
