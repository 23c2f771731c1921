"""Interpreter and parser behaviour beyond what the conformance suite pins down."""

from __future__ import annotations

from fractions import Fraction

import pytest

from ledger.numscript import NumscriptError, ParseError, parse
from ledger.numscript import flags as ff
from ledger.numscript.ast import Infix, MonetaryLit, Prefix, SendStmt
from ledger.numscript.interpreter import find_scaling_solution
from ledger.numscript.values import parse_portion
from ledger.numscript.valuetypes import value_to_string

from .helpers import postings, run_script


@pytest.mark.parametrize(
    ("expr", "expected"),
    [
        ("1 + 2 - 4", "-1"),
        ("-1 + 2", "1"),
        ("10 - -3", "13"),
        ("1/3", "1/3"),
        ("-2/4", "-1/2"),
        ("(1 + 1)/4", "1/2"),
        ("[USD/2 10] - [USD/2 3] + [USD/2 1]", "USD/2 8"),
        ("-[USD/2 5]", "USD/2 -5"),
        ("[EUR/2 100-1]", "EUR/2 99"),
        ("12%", "3/25"),
        ("0.019%", "19/100000"),
        ("10_000", "10000"),
        ('"a \\" b"', 'a \\" b'),
        ("@users:1", "users:1"),
        ("COIN", "COIN"),
    ],
)
def test_expression_values_and_their_metadata_strings(expr: str, expected: str) -> None:
    result = run_script(f'set_tx_meta("k", {expr})')
    assert result.tx_meta == {"k": expected}


def test_prefix_minus_binds_tighter_than_division_and_addition() -> None:
    stmt = parse("send -[COIN 1] + [COIN 2] ( source = @world destination = @a )").statements[0]
    assert isinstance(stmt, SendStmt)
    assert isinstance(stmt.sent, Infix) and stmt.sent.op == "+"
    assert isinstance(stmt.sent.left, Prefix)


def test_monetary_literal_with_negative_amount_is_split_like_antlr() -> None:
    stmt = parse("vars { asset $a }\nsave [$a -5] from @x").statements[0]
    sent = stmt.sent  # type: ignore[union-attr]
    assert isinstance(sent, MonetaryLit)
    assert isinstance(sent.amount, Prefix)


def test_nested_block_comments_and_line_comments() -> None:
    source = '/* outer /* inner */ still comment */\n// line\nset_tx_meta("k", 1) // end'
    assert run_script(source).tx_meta == {"k": "1"}


def test_multiple_parse_errors_report_the_first() -> None:
    with pytest.raises(ParseError) as info:
        parse("send [COIN 1] ( source = @a )\nsend")
    assert (info.value.line, info.value.column) == (1, 29)
    assert info.value.expected == "'destination'"


def test_leftover_units_go_to_the_first_items_in_written_order() -> None:
    source = "send [COIN 7] ( source = @world destination = { 1/3 to @a 1/3 to @b 1/3 to @c } )"
    assert [p.amount for p in run_script(source).postings] == [3, 2, 2]


def test_zero_parts_produce_no_posting() -> None:
    source = "send [COIN 1] ( source = @world destination = { 50% to @a 50% to @b } )"
    assert postings(run_script(source)) == [("world", "a", "COIN", 1)]


def test_adjacent_chunks_of_one_account_merge_but_destination_clauses_do_not() -> None:
    source = """
    send [COIN 10] (
      source = { @s allowing overdraft up to [COIN 2]  @s allowing overdraft up to [COIN 5]  @w }
      destination = { max [COIN 3] to @d  remaining to @d }
    )
    """
    result = run_script(source, balances={"w": {"COIN": 100}})
    assert postings(result) == [
        ("s", "d", "COIN", 3),
        ("s", "d", "COIN", 2),
        ("w", "d", "COIN", 5),
    ]


def test_kept_funds_go_back_to_their_sender() -> None:
    source = """
    send [COIN 10] ( source = @a destination = { max [COIN 4] kept remaining to @b } )
    send [COIN *] ( source = @a destination = @c )
    """
    result = run_script(source, balances={"a": {"COIN": 10}})
    assert postings(result) == [("a", "b", "COIN", 6), ("a", "c", "COIN", 4)]


def test_save_resets_a_negative_balance_to_zero() -> None:
    source = """
    save [COIN 1] from @a
    send [COIN 5] ( source = @a allowing overdraft up to [COIN 5] destination = @b )
    """
    result = run_script(source, balances={"a": {"COIN": -3}})
    assert postings(result) == [("a", "b", "COIN", 5)]


def test_oneof_rollback_also_drops_scaling_postings_of_the_failed_branch() -> None:
    # deliberate divergence from upstream, whose oneof rollback restores the queue and the
    # balances but keeps the postings a failed branch's scaling conversions emitted
    source = """
    send [EUR/2 500] (
      source = oneof { @acc with scaling through @swap  @world }
      destination = @dest
    )
    """
    result = run_script(source, balances={"acc": {"EUR": 1}}, flags=[ff.ONEOF, ff.ASSET_SCALING])
    assert postings(result) == [("world", "dest", "EUR/2", 500)]


def test_undeclared_type_names_are_refused_even_with_an_origin() -> None:
    with pytest.raises(NumscriptError, match="unknown type 'money'"):
        run_script("vars { money $m = balance(@a, COIN) }")


def test_destination_caps_are_not_evaluated_once_nothing_is_left() -> None:
    source = """
    send [COIN 5] ( source = @world destination = { max [COIN 5] to @a  max $nope to @b  remaining kept } )
    """
    assert postings(run_script(source)) == [("world", "a", "COIN", 5)]


def test_scaling_solution_converts_only_whole_units_finest_first() -> None:
    assert find_scaling_solution(None, 2, {0: 2, 2: 1, 3: 30}) == ([(3, 30), (0, 2)], 203)
    assert find_scaling_solution(400, 2, {0: 99, 2: 1}) == ([(0, 4)], 400)
    assert find_scaling_solution(2, 2, {0: 0, 2: 1, 3: 1, 4: 10}) == ([], 0)
    assert find_scaling_solution(None, 2, {3: 21}) == ([(3, 20)], 2)
    assert find_scaling_solution(None, 2, {3: -40}) == ([], 0)


def test_portion_parsing_and_printing() -> None:
    assert parse_portion("12.5%") == Fraction(1, 8)
    assert value_to_string(Fraction(1)) == "1/1"
    assert value_to_string(Fraction(21, 50)) == "21/50"


def test_results_expose_plain_strings() -> None:
    result = run_script(
        'vars { account $a }\nsend [COIN 2] ( source = @world destination = $a )\nset_tx_meta("to", $a)',
        vars={"a": "users:1"},
    )
    [posting] = result.postings
    assert [type(v) for v in (posting.source, posting.destination, posting.asset)] == [str] * 3
    assert type(result.tx_meta["to"]) is str
