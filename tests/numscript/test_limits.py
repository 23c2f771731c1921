"""Hostile input: every limit of ``ledger.numscript.limits`` is a NumscriptError with a span
(never a RecursionError, a ValueError or seconds of CPU), and the parse cache is bounded."""

from __future__ import annotations

import sys
from dataclasses import replace

import pytest

from ledger import numscript as ns
from ledger.numscript import flags as ff
from ledger.numscript import limits as lim
from ledger.numscript.bench import oneof_script
from ledger.numscript.parser import ParseCache, parse_uncached

from .helpers import postings, run_script

SEND = "send [USD/2 1] ( source = {source} destination = {destination} )"


def _send(source: str = "@world", destination: str = "@b") -> str:
    return SEND.format(source=source, destination=destination)


def test_defaults_are_the_documented_ones() -> None:
    assert (
        ns.Limits(
            max_script_bytes=65_536,
            max_depth=50,
            max_statements=1_000,
            max_sources=1_000,
            max_destinations=1_000,
            max_branches=1_000,
            max_steps=200_000,
        )
        == lim.DEFAULT_LIMITS
    )


# --- nesting -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "source",
    [
        'set_tx_meta("k", ' + "(" * 5_000 + "1" + ")" * 5_000 + ")",
        'set_tx_meta("k", ' + "-" * 5_000 + "1)",
        'set_tx_meta("k", ' + "+".join(["1"] * 5_000) + ")",
        'set_tx_meta("k", ' + "/".join(["1"] * 5_000) + ")",
        _send(source="{" * 5_000 + "@a" + "}" * 5_000),
        _send(source="max [USD/2 1] from " * 5_000 + "@a"),
        _send(destination="{ 1/2 to " * 5_000 + "@b" + " remaining kept }" * 5_000),
        _send(destination="{ max [USD/2 1] to " * 5_000 + "@b" + " remaining kept }" * 5_000),
        'set_tx_meta("k", ' + "[USD/2 " * 5_000 + "1" + "]" * 5_000 + ")",
        'set_tx_meta("k", ' + "get_amount(" * 5_000 + "1" + ")" * 5_000 + ")",
    ],
    ids=[
        "parens",
        "prefix",
        "plus-chain",
        "division-chain",
        "inorder",
        "max",
        "allotment-dest",
        "inorder-dest",
        "monetary",
        "calls",
    ],
)
def test_deep_nesting_is_a_parse_error_with_a_span(source: str) -> None:
    # given: 5,000 levels, far deeper than Python's recursion limit
    assert sys.getrecursionlimit() < 5_000

    # when
    with pytest.raises(ns.NestingTooDeep) as info:
        ns.parse(source, ns.Limits(max_script_bytes=1 << 20))

    # then
    err = info.value
    assert isinstance(err, ns.ParseError)
    assert err.message == "expected at most 50 levels of nesting, found level 51"
    assert err.line == 1 and err.column > 1
    assert err.span is not None and err.span.end > err.span.start


def test_nesting_up_to_the_limit_runs() -> None:
    # given: 50 parentheses in a statement's argument (the statement itself is level 0)
    source = 'set_tx_meta("k", ' + "(" * 50 + "1" + ")" * 50 + ")"

    # when
    result = run_script(source)

    # then
    assert result.tx_meta == {"k": "1"}
    with pytest.raises(ns.NestingTooDeep):
        ns.parse(source, ns.Limits(max_depth=49))


def test_a_configured_depth_far_above_the_stack_is_still_an_error() -> None:
    source = 'set_tx_meta("k", ' + "(" * 20_000 + "1" + ")" * 20_000 + ")"
    with pytest.raises(ns.LimitExceeded, match="levels of nesting"):
        parse_uncached(source, ns.Limits(max_script_bytes=1 << 20, max_depth=10**9))


# --- size and width ----------------------------------------------------------------------


def test_script_size_is_checked_in_utf8_bytes_before_parsing() -> None:
    source = _send() + "// " + "é" * 40
    size = len(source.encode())
    with pytest.raises(ns.LimitExceeded) as info:
        ns.parse(source, ns.Limits(max_script_bytes=size - 1))
    assert info.value.message == (
        f"script too large: expected at most {size - 1} bytes of script, found {size}"
    )
    assert ns.parse(source, ns.Limits(max_script_bytes=size)).statements


def test_lone_surrogates_are_measured_not_a_crash() -> None:
    with pytest.raises(ns.LimitExceeded):
        ns.parse("\ud800" * 20, ns.Limits(max_script_bytes=10))


@pytest.mark.parametrize(
    ("limits", "source", "message", "position"),
    [
        (
            ns.Limits(max_statements=2),
            'set_tx_meta("a", 1)\nset_tx_meta("b", 2)\nset_tx_meta("c", 3)',
            "expected at most 2 statements, found 3",
            (3, 1),
        ),
        (
            ns.Limits(max_sources=3),
            _send(source="{ @a @b @c }"),  # the block and 3 accounts
            "expected at most 3 sources in one send, found more",
            (1, 35),  # @c
        ),
        (
            ns.Limits(max_destinations=2),
            _send(destination="{ 1/2 to @b remaining to @c }"),
            "expected at most 2 destinations in one send, found more",
            (1, 57),  # @b
        ),
        (
            ns.Limits(max_branches=2),
            _send(source="oneof { @a @b @c }"),
            "expected at most 2 branches in one 'oneof', found more",
            (1, 41),  # @c
        ),
        (
            ns.Limits(max_branches=1),
            _send(destination="oneof { max [USD/2 1] to @a max [USD/2 1] to @b remaining kept }"),
            "expected at most 1 branches in one 'oneof', found more",
            (1, 76),
        ),
    ],
    ids=["statements", "sources", "destinations", "oneof-sources", "oneof-destinations"],
)
def test_width_limits(
    limits: ns.Limits, source: str, message: str, position: tuple[int, int]
) -> None:
    with pytest.raises(ns.LimitExceeded) as info:
        ns.parse(source, limits)
    assert info.value.message == "script too large: " + message
    assert (info.value.line, info.value.column) == position


def test_sources_are_counted_per_send() -> None:
    source = "\n".join(_send(source="{ @a @b @world }") for _ in range(3))
    assert len(ns.parse(source, ns.Limits(max_sources=4)).statements) == 3


# --- numbers -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "literal", ["9" * 5_000, str(2**256), "1_" * 100 + "1", "1" + "0" * 4_400 + "%"]
)
def test_number_literals_beyond_256_bits_are_refused(literal: str) -> None:
    source = f'set_tx_meta("k", {literal})'
    with pytest.raises(ns.NumberOutOfRange) as info:
        ns.parse(source)
    assert (info.value.line, info.value.column) == (1, 18)
    assert info.value.message.startswith("number out of range: expected an integer between")


def test_largest_literal_is_accepted() -> None:
    result = run_script(f'set_tx_meta("k", {2**256 - 1})')
    assert result.tx_meta == {"k": str(2**256 - 1)}


@pytest.mark.parametrize("value", ["9" * 5_000, str(2**256), "-" + str(2**256)])
def test_number_inputs_beyond_256_bits_are_refused(value: str) -> None:
    with pytest.raises(ns.NumberOutOfRange):
        run_script('vars { number $n }\nset_tx_meta("k", $n)', vars={"n": value})
    with pytest.raises(ns.NumberOutOfRange):
        run_script('vars { monetary $m }\nset_tx_meta("k", $m)', vars={"m": f"USD/2 {value}"})


def test_arithmetic_beyond_256_bits_is_refused() -> None:
    # given
    big = 2**256 - 1
    source = f'vars {{ number $n }}\nset_tx_meta("k", $n + {big})'

    # then
    with pytest.raises(ns.NumberOutOfRange) as info:
        run_script(source, vars={"n": "1"})
    assert (info.value.line, info.value.column) == (2, 18)
    assert run_script(source, vars={"n": "0"}).tx_meta == {"k": str(big)}
    with pytest.raises(ns.NumberOutOfRange):
        run_script(f"send [USD/2 {big}] + [USD/2 1] ( source = @world destination = @b )")


# --- step budget -------------------------------------------------------------------------


def test_step_budget_is_deterministic_and_refuses_with_the_statement_span() -> None:
    # given: 100 statements of 6 evaluations each (the key, 2 additions, 3 numbers)
    source = "\n".join(f'set_tx_meta("k{i}", 1 + 1 + 1)' for i in range(100))
    limits = ns.Limits(max_steps=250)

    # when
    failures = []
    for _ in range(3):
        with pytest.raises(ns.StepBudgetExceeded) as info:
            ns.run(ns.parse(source), store=ns.StaticStore(), limits=limits)
        failures.append((info.value.line, info.value.column, info.value.message))

    # then: the same statement every time (the 42nd: 41 x 6 = 246 <= 250 < 42 x 6)
    assert (
        failures
        == [(42, 1, "script too costly: expected at most 250 execution steps, the run needed more")]
        * 3
    )
    assert len(ns.run(ns.parse(source), store=ns.StaticStore()).tx_meta) == 100


def test_default_budget_allows_the_marketplace_flows_many_times_over() -> None:
    # given: the split benchmark's script
    from ledger.numscript.bench import SPLIT_SCRIPT, SPLIT_VARS, split_store

    # then: it runs within 1% of the default budget
    limits = ns.Limits(max_steps=lim.DEFAULT_LIMITS.max_steps // 100)
    result = ns.run(ns.parse(SPLIT_SCRIPT), vars=SPLIT_VARS, store=split_store(), limits=limits)
    assert len(result.postings) == 3


# --- oneof rollback ------------------------------------------------------------------------


def test_oneof_rollback_restores_queue_balances_and_loads_exactly() -> None:
    # given: failing branches that grow the queue's last entry (@a again), push senders, load
    # balances and nest another oneof (whose last branch fails too) before the one that pays
    source = """#![feature("experimental-oneof")]
send [USD/2 10] (
  source = {
    max [USD/2 1] from @a
    oneof {
      { @a @b max [USD/2 1] from @c }
      oneof { { @b max [USD/2 1] from @c } max [USD/2 2] from @c }
      { @b @c @a }
    }
  }
  destination = @d
)
send [USD/2 4] ( source = { @a @b @c } destination = @e )
"""
    # when
    result = run_script(
        source,
        balances={"a": {"USD/2": 2}, "b": {"USD/2": 5}, "c": {"USD/2": 7}},
        flags=[ff.ONEOF],
    )

    # then: the last branch pays 9 (@b 5, @c 4) after @a's 1; @a keeps 1 for the next send
    assert postings(result) == [
        ("a", "d", "USD/2", 1),
        ("b", "d", "USD/2", 5),
        ("c", "d", "USD/2", 4),
        ("a", "e", "USD/2", 1),
        ("c", "e", "USD/2", 3),
    ]


def _steps(branches: int) -> int:
    """The exact number of steps a oneof of ``branches`` (only the last can pay) needs."""
    limits = ns.Limits(max_script_bytes=1 << 20, max_sources=10**5, max_branches=10**5)
    program = ns.parse(oneof_script(branches), limits)
    balances = {f"users:{i}": {("USD/2", ""): 50} for i in range(branches - 1)}
    balances[f"users:{branches - 1}"] = {("USD/2", ""): 100}
    store = ns.StaticStore(balances=balances)
    low, high = 1, 10**7
    while low < high:  # the smallest budget that lets it run
        middle = (low + high) // 2
        try:
            ns.run(program, store=store, limits=replace(limits, max_steps=middle))
            high = middle
        except ns.StepBudgetExceeded:
            low = middle + 1
    return low


def test_oneof_work_grows_linearly_with_its_branches() -> None:
    small, large = _steps(100), _steps(1_000)
    assert 9.5 * small <= large <= 10.5 * small


# --- parse cache -------------------------------------------------------------------------


def test_parse_cache_is_bounded_by_bytes_and_skips_big_scripts() -> None:
    # given
    cache = ParseCache(max_bytes=1_000)
    limits = ns.Limits()
    small = [f'set_tx_meta("k", {i})' + " " * 80 for i in range(20)]  # ~100 bytes each
    big = 'set_tx_meta("k", 1)' + " " * 200  # above 1/8 of the budget

    # when
    for source in small:
        cache.get(source, limits)
    first = cache.get(big, limits)

    # then
    assert cache.bytes <= 1_000
    assert len(cache) == 1_000 // len(small[0])
    assert cache.get(small[-1], limits) is cache.get(small[-1], limits)  # still cached
    assert cache.get(big, limits) is not first  # never cached
    assert len(cache) == 1_000 // len(small[0])


def test_parse_cache_keys_on_limits() -> None:
    source = _send(source="{ @a @b @c }")
    assert ns.parse(source).statements
    with pytest.raises(ns.LimitExceeded):
        ns.parse(source, ns.Limits(max_sources=2))


def test_checker_reports_limits_as_diagnostics() -> None:
    deep = 'set_tx_meta("k", ' + "(" * 100 + "1" + ")" * 100 + ")"
    [diagnostic] = ns.check(deep)
    assert (diagnostic.code, diagnostic.severity, diagnostic.line) == ("parse-error", "error", 1)
    assert diagnostic.message == "expected at most 50 levels of nesting, found level 51"

    wide = "\n".join('set_tx_meta("k", 1)' for _ in range(1_001))
    [diagnostic] = ns.check(wide)
    assert (diagnostic.code, diagnostic.line) == ("limit-exceeded", 1_001)


def test_ambiguous_negative_amounts_cannot_make_the_parser_backtrack_without_bound() -> None:
    # given: `[ASSET -n]` is re-split on failure; nested, the retries would multiply
    source = 'set_tx_meta("k", ' + "[COIN -1 -" * 12 + "1" + "]" * 12 + ")"

    # then: refused by the parse budget (4 per token), with the span where it ran out
    with pytest.raises(ns.LimitExceeded, match="parse steps for this script") as info:
        ns.parse(source)
    assert info.value.line == 1
    # while an ordinary negative amount still parses as upstream does
    result = run_script("send [EUR/2 -100] + [EUR/2 200] ( source = @world destination = @a )")
    assert postings(result) == [("world", "a", "EUR/2", 100)]
