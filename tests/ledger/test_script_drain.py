"""A Numscript run whose last statement sends all of one account (`send [A *]`), and whose
`meta()` values this process has read before, posts in one call from its second run: the
interpreter hands the drain to the write (`ledger_post_script`), which locks the account,
takes its balance, splits it exactly as the interpreter would, and checks the metadata the run
used is still what is stored. Whatever the write cannot vouch for (changed metadata, an empty
part, missing funds) writes nothing, and the ordinary run answers."""

from __future__ import annotations

import contextlib
import threading
import uuid
from fractions import Fraction

import pytest
from django.db import connection, connections, transaction
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from ledger.errors import InsufficientFunds, LedgerError, ReferenceConflict
from ledger.models import Transaction
from ledger.numscript import NumscriptError, StaticStore, parse, run
from ledger.numscript.bench import SPLIT_SCRIPT
from ledger.selectors import balance_get
from ledger.services import account_metadata_set, script_reads, transaction_post
from tests.ledger.helpers import p
from tests.snapshots import db_snapshot

# two portions and the rest, from variables: one template for every case below
SPREAD = (
    "vars {\n  account $order monetary $fee portion $a portion $b\n"
    "  account $rider account $fees account $partner account $restaurant\n}\n"
    "send $fee ( source = $order destination = $rider )\n"
    "send [USD/2 *] ( source = $order destination = {\n"
    "  $a to $fees\n  $b to $partner\n  remaining to $restaurant } )"
)


def spread_vars(order: str, fee: str, a: str, b: str, to: str = "1") -> dict[str, str]:
    """SPREAD's variables; `to` names the destinations (each Hypothesis example its own: the
    examples share one database, and their amounts up to 2^62 would add up past the bigint
    range in shared destinations)."""
    return {
        "order": order,
        "fee": fee,
        "a": a,
        "b": b,
        "rider": f"riders:{to}",
        "fees": f"platform:fees:{to}",
        "partner": f"partners:{to}",
        "restaurant": f"restaurants:{to}",
    }


@pytest.fixture(autouse=True)
def _fresh_read_plans():
    script_reads.forget_read_plans()
    yield
    script_reads.forget_read_plans()


def split_vars(order: str, restaurant: str = "restaurants:1") -> dict[str, str]:
    return {
        "order": order,
        "restaurant": restaurant,
        "rider": "riders:1",
        "delivery_fee": "USD/2 499",
    }


def ordinary(script: str, vars_: dict[str, str], balance: int, meta: dict) -> object:
    """What the interpreter alone posts against these values: postings, or the error's name."""
    store = StaticStore(balances={vars_["order"]: {"USD/2": balance}}, metadata=meta)
    try:
        result = run(parse(script), vars=vars_, store=store)
    except NumscriptError as exc:
        return type(exc).__name__
    return [(x.source, x.destination, x.asset, x.amount) for x in result.postings if x.amount > 0]


def rows(result) -> list[tuple[str, str, str, int]]:
    return [(x.source, x.destination, x.asset, x.amount) for x in result.postings]


@pytest.mark.django_db(transaction=True)
def test_the_send_all_split_posts_in_one_call_from_its_second_run(reads, speculative_writes):
    # given: four funded orders, the restaurant's commission
    account_metadata_set(address="restaurants:1", metadata={"commission": "15%"})
    balances = [4990, 1234, 10_007, 600]
    transaction_post(postings=[p("world", f"orders:{i}", b) for i, b in enumerate(balances)])
    meta = {"restaurants:1": {"commission": "15%"}}

    # when: the split runs for each, outside any transaction (autocommit)
    results = [
        transaction_post(script=SPLIT_SCRIPT, vars=split_vars(f"orders:{i}"))
        for i in range(len(balances))
    ]

    # then: the first run read (metadata, then the balance); the others read nothing and
    # wrote in one call; each posted what the interpreter posts on the real values
    assert len(reads) == 2
    assert speculative_writes == [True, True, True]
    for i, (balance, result) in enumerate(zip(balances, results, strict=True)):
        vars_ = split_vars(f"orders:{i}")
        assert rows(result) == ordinary(SPLIT_SCRIPT, vars_, balance, meta)
        assert balance_get(address=f"orders:{i}", asset="USD/2") == 0
        stored = Transaction.objects.get(pk=result.transaction.pk)
        assert sorted(
            (x.source.address, x.destination.address, x.amount) for x in stored.postings.all()
        ) == sorted((s, d, a) for s, d, _asset, a in rows(result))
    assert rows(results[0]) == [
        ("orders:0", "riders:1", "USD/2", 499),
        ("orders:0", "platform:fees", "USD/2", 674),
        ("orders:0", "restaurants:1", "USD/2", 3817),
    ]


@pytest.mark.django_db
def test_a_commission_changed_elsewhere_is_caught_by_the_write_and_the_new_one_applies(
    speculative_writes,
):
    # given: a learned template, then the commission changed by another process (this one's
    # remembered metadata is not told)
    account_metadata_set(address="restaurants:1", metadata={"commission": "15%"})
    transaction_post(postings=[p("world", "orders:1", 1000), p("world", "orders:2", 1000)])
    transaction_post(script=SPLIT_SCRIPT, vars=split_vars("orders:1"))
    with connection.cursor() as cursor:
        cursor.execute(
            'UPDATE ledger_account SET metadata = \'{"commission": "20%"}\' '
            "WHERE address = 'restaurants:1'"
        )

    # when: the split runs again
    result = transaction_post(script=SPLIT_SCRIPT, vars=split_vars("orders:2"))

    # then: the speculative write was refused (it wrote nothing), the ordinary run used 20%
    assert speculative_writes == [False]
    assert [x.amount for x in result.postings] == [499, 101, 400]
    assert Transaction.objects.count() == 3  # the funding and the two splits


@pytest.mark.django_db
def test_metadata_set_here_is_read_again_before_the_next_speculative_run(reads, speculative_writes):
    account_metadata_set(address="restaurants:1", metadata={"commission": "15%"})
    transaction_post(postings=[p("world", f"orders:{i}", 1000) for i in (1, 2, 3)])
    transaction_post(script=SPLIT_SCRIPT, vars=split_vars("orders:1"))

    account_metadata_set(address="restaurants:1", metadata={"commission": "50%"})
    second = transaction_post(script=SPLIT_SCRIPT, vars=split_vars("orders:2"))
    third = transaction_post(script=SPLIT_SCRIPT, vars=split_vars("orders:3"))

    # the change forgot the remembered metadata: the second run read it (no wasted write),
    # the third wrote in one call
    assert speculative_writes == [True]
    assert [x.amount for x in second.postings] == [499, 251, 250]
    assert [x.amount for x in third.postings] == [499, 251, 250]
    assert len(reads) == 3


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("balance", "expected"),
    [
        # nothing left after the fee: the ordinary run sends only the fee
        (499, [("orders:9", "riders:1", "USD/2", 499)]),
        # one unit left: the 15% part is 1 (the leftover unit), the rest is empty
        (500, [("orders:9", "riders:1", "USD/2", 499), ("orders:9", "platform:fees", "USD/2", 1)]),
    ],
)
def test_a_drain_with_an_empty_part_is_left_to_the_ordinary_run(
    balance, expected, speculative_writes
):
    account_metadata_set(address="restaurants:1", metadata={"commission": "15%"})
    transaction_post(postings=[p("world", "orders:1", 1000), p("world", "orders:9", balance)])
    transaction_post(script=SPLIT_SCRIPT, vars=split_vars("orders:1"))
    before = Transaction.objects.count()

    result = transaction_post(script=SPLIT_SCRIPT, vars=split_vars("orders:9"))

    assert speculative_writes == [False]
    assert rows(result) == expected
    assert Transaction.objects.count() == before + 1
    assert balance_get(address="orders:9", asset="USD/2") == 0


@pytest.mark.django_db
def test_an_order_short_of_the_fee_is_refused_with_its_real_balance_and_nothing_is_written(
    speculative_writes,
):
    account_metadata_set(address="restaurants:1", metadata={"commission": "15%"})
    transaction_post(postings=[p("world", "orders:1", 1000), p("world", "orders:2", 300)])
    transaction_post(script=SPLIT_SCRIPT, vars=split_vars("orders:1"))
    before = db_snapshot()

    with pytest.raises(InsufficientFunds) as refused:
        transaction_post(script=SPLIT_SCRIPT, vars=split_vars("orders:2"))

    assert refused.value.extra["available"] == 300
    assert speculative_writes == [False]
    assert db_snapshot() == before


@pytest.mark.django_db
def test_a_reference_is_replayed_or_refused_without_draining_again(speculative_writes):
    account_metadata_set(address="restaurants:1", metadata={"commission": "15%"})
    transaction_post(postings=[p("world", "orders:1", 1000), p("world", "orders:2", 2000)])
    transaction_post(script=SPLIT_SCRIPT, vars=split_vars("orders:1"))
    first = transaction_post(script=SPLIT_SCRIPT, vars=split_vars("orders:2"), reference="s:2")
    transaction_post(postings=[p("world", "orders:2", 700)])  # funds arrive after the split
    before = db_snapshot()

    again = transaction_post(script=SPLIT_SCRIPT, vars=split_vars("orders:2"), reference="s:2")
    with pytest.raises(ReferenceConflict):
        transaction_post(
            script=SPLIT_SCRIPT,
            vars=split_vars("orders:2", restaurant="restaurants:2"),
            reference="s:2",
        )

    assert again.replayed and again.transaction.pk == first.transaction.pk
    assert rows(again) == rows(first)
    assert db_snapshot() == before
    assert balance_get(address="orders:2", asset="USD/2") == 700


@pytest.mark.django_db
def test_a_drained_account_that_is_not_first_in_the_lock_order_is_run_the_ordinary_way(
    speculative_writes,
):
    sweep = "vars { account $s account $d }\nsend [USD/2 *] ( source = $s destination = $d )"
    transaction_post(postings=[p("world", f"wallets:{i}", 10 * i) for i in (1, 2, 3)])

    results = [
        transaction_post(script=sweep, vars={"s": f"wallets:{i}", "d": "shop"}) for i in (1, 2, 3)
    ]

    # "shop" comes before "wallets:..": the write could not lock the wallet first
    assert [x.amount for r in results for x in r.postings] == [10, 20, 30]
    assert speculative_writes == []
    plan = script_reads.read_plan(parse(sweep))
    assert plan is not None and plan.speculate is False


@pytest.mark.django_db(transaction=True)
def test_drains_and_credits_racing_on_one_account_never_lose_or_invent_money():
    # given: a learned template; one order account credited 100 times by one thread while
    # another drains it 100 times (a drain of an empty account posts nothing: refused)
    sweep = (
        "vars { account $s }\n"
        "send [USD/2 *] ( source = $s destination = { 1/3 to @x:1 remaining to @y:1 } )"
    )
    transaction_post(postings=[p("world", "orders:0", 10)])
    transaction_post(script=sweep, vars={"s": "orders:0"})
    errors: list[BaseException] = []

    def credit() -> None:
        try:
            for _ in range(100):
                transaction_post(postings=[p("world", "orders:1", 7)])
        except BaseException as exc:  # reported below
            errors.append(exc)
        finally:
            connections.close_all()

    def drain() -> None:
        try:
            for _ in range(100):
                with contextlib.suppress(LedgerError):  # nothing to send at that moment
                    transaction_post(script=sweep, vars={"s": "orders:1"})
        except BaseException as exc:  # reported below
            errors.append(exc)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=credit), threading.Thread(target=drain)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)

    # then: every unit credited is either still there or in x:1 / y:1, split 1/3 per drain
    assert errors == []
    left = balance_get(address="orders:1", asset="USD/2")
    a, b = (balance_get(address=x, asset="USD/2") for x in ("x:1", "y:1"))
    assert left >= 0
    assert left + a + b == 700 + 10
    for tx in Transaction.objects.filter(postings__source__address="orders:1").distinct():
        amounts = [x.amount for x in tx.postings.order_by("index")]
        total = sum(amounts)
        assert amounts[0] == total // 3 + (1 if total % 3 else 0)


PORTIONS = st.one_of(
    st.integers(0, 100).map(lambda n: f"{n}%"),
    st.tuples(st.integers(0, 7), st.integers(1, 9)).map(lambda t: f"{t[0]}/{t[1]}"),
)


@pytest.mark.django_db
@settings(
    max_examples=80,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(
    balance=st.one_of(st.integers(0, 3000), st.integers(0, 2**62)),
    fee=st.integers(0, 1500),
    a=PORTIONS,
    b=PORTIONS,
)
# 2^62 all to the last part, twice in one database: shared destinations would overflow
@example(balance=2**62, fee=0, a="0%", b="0%")
@example(balance=2**62, fee=1500, a="100%", b="7/9")
@example(balance=2**62, fee=0, a="0%", b="0%")
def test_the_write_splits_a_drain_exactly_as_the_interpreter(
    balance, fee, a, b, speculative_writes
):
    # given: a learned template (a warm-up run), and an order holding `balance`
    order = f"orders:{uuid.uuid4().hex[:12]}"
    transaction_post(postings=[p("world", "orders:warm", 10_000)])
    warm = spread_vars("orders:warm", "USD/2 100", "10%", "1/4")
    transaction_post(script=SPREAD, vars=warm)
    if balance:  # from an account of its own: world's volumes would pass the bigint range
        bank = f"banks:{uuid.uuid4().hex[:12]}"
        transaction_post(postings=[p(bank, order, balance)], overdraft={bank: None})
    vars_ = spread_vars(order, f"USD/2 {fee}", a, b, to=order.partition(":")[2])
    expected = ordinary(SPREAD, vars_, balance, {})
    attempts = len(speculative_writes)

    # when: the same template runs for it (inside this test's transaction: a guarded write)
    with transaction.atomic():
        try:
            outcome: object = rows(transaction_post(script=SPREAD, vars=vars_))
        except InsufficientFunds:
            outcome = "MissingFundsError"
        except LedgerError as exc:
            outcome = exc.extra.get("error", type(exc).__name__)

    # then: the same postings (or the same refusal), and the order holds what they leave
    if expected == []:
        expected = "InvalidTransaction"  # the ledger stores no empty transaction
    assert outcome == expected
    if isinstance(expected, list):
        assert balance_get(address=order, asset="USD/2") == 0
    else:
        assert balance_get(address=order, asset="USD/2") == balance
    # every part non-empty: the write computed the drain itself
    if isinstance(expected, list) and len(expected) == (fee > 0) + 3:
        assert speculative_writes[attempts:] == [True]


def test_a_drains_parts_are_the_interpreters_allotment() -> None:
    # the store's view of a drain: portions as fractions, in the order written
    store = script_reads.SpeculativeStore()
    program = parse(SPREAD)
    result = run(
        program,
        vars=spread_vars("orders:1", "USD/2 5", "15%", "1/3"),
        store=store,
    )
    assert [(x.destination, x.amount) for x in result.postings] == [("riders:1", 5)]
    assert store.required == {("orders:1", "USD/2"): 5}
    assert store.drained == script_reads.Drain(
        ("orders:1", "USD/2"),
        -5,
        (
            (Fraction(3, 20), "platform:fees:1"),
            (Fraction(1, 3), "partners:1"),
            (Fraction(31, 60), "restaurants:1"),
        ),
    )
