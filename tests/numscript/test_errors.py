"""Error cases the spec format cannot express (modelled on the error cases of upstream Go's
interpreter_test.go, which stayed there when its success cases moved to spec files).

Each test asserts the error type, its position (line, column) and its payload; a few also
assert the full compiler-style rendering."""

from __future__ import annotations

from fractions import Fraction
from typing import Any, TypeVar

import pytest

from ledger import numscript as ns
from ledger.numscript import flags as ff

from .helpers import postings, run_script

E = TypeVar("E", bound=ns.NumscriptError)


def _raises(error: type[E], source: str, **kwargs: Any) -> E:
    with pytest.raises(error) as info:
        if kwargs.pop("parse_only", False):
            ns.parse(source)
        else:
            run_script(source, **kwargs)
    return info.value


# --- syntax ------------------------------------------------------------------------------


def test_parse_error_says_what_was_expected_and_found() -> None:
    source = "send [COIN 10] (\n  source = @a\n  destination =\n)\n"
    err = _raises(ns.ParseError, source, parse_only=True)
    assert (err.line, err.column) == (4, 1)
    assert err.render(source, "split.num") == (
        "split.num:4:1: error: expected a destination (an account, '{' or 'oneof'), found ')'\n)\n^"
    )


def test_parse_error_on_unknown_character() -> None:
    err = _raises(ns.ParseError, "send [COIN 1] ( source = @a ; )", parse_only=True)
    assert (err.line, err.column) == (1, 29)
    assert "unexpected character ';'" in err.message


def test_parse_error_on_send_all_outside_a_sent_value() -> None:
    err = _raises(ns.ParseError, 'set_tx_meta("k", [COIN *])', parse_only=True)
    assert (err.line, err.column) == (1, 24)
    assert "only allowed as the value sent by send or save" in err.message


def test_parse_error_on_unterminated_block_comment() -> None:
    err = _raises(ns.ParseError, "/* a /* nested */ comment", parse_only=True)
    assert (err.line, err.column) == (1, 1)


def test_parse_is_cached_by_source_text() -> None:
    source = "send [COIN 1] ( source = @world destination = @a )"
    assert ns.parse(source) is ns.parse(source)


# --- variables ---------------------------------------------------------------------------


def test_unbound_variable() -> None:
    source = "send $amt (\n  source = @world\n  destination = @b\n)"
    err = _raises(ns.UnboundVariable, source)
    assert (err.line, err.column, err.name) == (1, 6, "amt")
    assert err.render(source, "t.num") == (
        "t.num:1:6: error: unbound variable $amt: expected it to be declared in the vars block "
        "before this use\n"
        "send $amt (\n"
        "     ^~~~"
    )


def test_missing_variable() -> None:
    err = _raises(ns.MissingVariable, "vars {\n  monetary $amt\n}")
    assert (err.line, err.column, err.name, err.type) == (2, 12, "amt", "monetary")


def test_extra_input_variables_are_ignored() -> None:
    result = run_script("vars { number $n }", vars={"n": "1", "unused": "x"})
    assert result.postings == []


def test_invalid_type() -> None:
    err = _raises(ns.InvalidType, "vars { invalidt $x }", vars={"x": "1"})
    assert (err.line, err.column, err.name) == (1, 8, "invalidt")


@pytest.mark.parametrize(
    ("type_", "raw", "error"),
    [
        ("monetary", "USD/2", ns.InvalidMonetaryLiteral),
        ("monetary", "USD/2  100", ns.InvalidMonetaryLiteral),
        ("monetary", "USD/2 1.5", ns.InvalidNumberLiteral),
        ("monetary", "usd 100", ns.InvalidAsset),
        ("number", "1_000", ns.InvalidNumberLiteral),
        ("number", "ten", ns.InvalidNumberLiteral),
        ("portion", "101%", ns.BadPortionParsing),
        ("portion", "3/2", ns.BadPortionParsing),
        ("portion", "1/0", ns.BadPortionParsing),
        ("portion", "half", ns.BadPortionParsing),
        ("account", "@users:1", ns.InvalidAccountName),
        ("account", "users::1", ns.InvalidAccountName),
        ("asset", "usd/2", ns.InvalidAsset),
        ("asset", "USD/1234567", ns.InvalidAsset),
    ],
)
def test_invalid_variable_values(type_: str, raw: str, error: type[ns.NumscriptError]) -> None:
    err = _raises(error, f"vars {{ {type_} $v }}", vars={"v": raw})
    assert isinstance(err, ns.InvalidVariableValue)
    assert (err.line, err.column) == (1, 9 + len(type_))


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("15%", "3/20"),
        ("12.5%", "1/8"),
        ("1/3", "1/3"),
        ("1 / 3", "1/3"),
        ("0%", "0/1"),
        ("100%", "1/1"),
    ],
)
def test_valid_portion_inputs(raw: str, expected: str) -> None:
    result = run_script('vars { portion $p }\nset_tx_meta("p", $p)', vars={"p": raw})
    assert result.tx_meta == {"p": expected}


def test_big_numbers_beyond_64_bits() -> None:
    result = run_script(
        "vars { monetary $m }\nsend $m ( source = @world destination = @b )",
        vars={"m": "USD/2 99999223372036854775807"},
    )
    assert postings(result) == [("world", "b", "USD/2", 99999223372036854775807)]


# --- types -------------------------------------------------------------------------------


def test_type_mismatch_number_used_as_account() -> None:
    source = "vars { number $n }\nsend [COIN 1] ( source = $n destination = @b )"
    err = _raises(ns.TypeMismatch, source, vars={"n": "1"})
    assert (err.line, err.column, err.expected, err.found_type) == (2, 26, "account", "number")
    assert err.message == "type mismatch: expected a value of type account, found number 1"


def test_type_mismatch_sending_a_non_monetary() -> None:
    err = _raises(ns.TypeMismatch, "send 42 ( source = @world destination = @b )")
    assert (err.line, err.column, err.expected) == (1, 6, "monetary")


def test_type_mismatch_string_used_as_cap() -> None:
    source = 'send [COIN 10] ( source = max "x" from @world destination = @b )'
    err = _raises(ns.TypeMismatch, source)
    assert (err.line, err.column, err.expected, err.found_type) == (1, 31, "monetary", "string")


def test_type_mismatch_account_as_meta_key() -> None:
    source = "vars { number $x = meta(@acc, @key) }"
    err = _raises(ns.TypeMismatch, source, metadata={"acc": {"key": "1"}})
    assert (err.line, err.column, err.expected) == (1, 31, "string")


def test_type_mismatch_left_of_plus() -> None:
    err = _raises(ns.TypeMismatch, 'set_tx_meta("k", @a + 1)')
    assert (err.line, err.column, err.expected) == (1, 18, "monetary|number")


def test_type_mismatch_string_right_of_plus() -> None:
    err = _raises(ns.TypeMismatch, 'set_tx_meta("k", 1 + "x")')
    assert (err.line, err.column, err.expected, err.found_type) == (1, 22, "number", "string")


def test_mismatched_currency_in_monetary_addition() -> None:
    err = _raises(ns.MismatchedCurrency, 'set_tx_meta("k", [EUR/2 1] + [USD/2 2])')
    assert (err.line, err.column, err.expected, err.got) == (1, 30, "EUR/2", "USD/2")


def test_mismatched_currency_in_overdraft_bound() -> None:
    source = (
        "send [USD/2 10] (\n  source = @a allowing overdraft up to [EUR/2 5]\n  destination = @b\n)"
    )
    err = _raises(ns.MismatchedCurrency, source)
    assert (err.line, err.column, err.expected, err.got) == (2, 40, "USD/2", "EUR/2")


def test_mismatched_currency_in_max_cap() -> None:
    source = (
        "send [USD/2 10] ( source = @world destination = { max [EUR/2 5] to @a remaining kept } )"
    )
    err = _raises(ns.MismatchedCurrency, source)
    assert (err.line, err.column) == (1, 55)


def test_divide_by_zero() -> None:
    err = _raises(ns.DivideByZero, 'set_tx_meta("k", 10/0)')
    assert (err.line, err.column, err.numerator) == (1, 18, 10)


# --- allotments, sources and funds -------------------------------------------------------


def test_invalid_destination_allotment_sum() -> None:
    source = "send [COIN 10] (\n  source = @world\n  destination = { 1/2 to @a 1/3 to @b }\n)"
    err = _raises(ns.InvalidAllotmentSum, source)
    assert (err.line, err.column) == (3, 17)
    assert isinstance(err, ns.InvalidAllotmentSum)
    assert err.actual_sum == Fraction(5, 6)
    assert err.message == "invalid allotment: expected the portions to sum to 1, found 5/6"


def test_invalid_source_allotment_sum() -> None:
    source = "send [COIN 10] ( source = { 50% from @a 40% from @b } destination = @c )"
    err = _raises(ns.InvalidAllotmentSum, source, balances={"a": {"COIN": 99}, "b": {"COIN": 99}})
    assert (err.line, err.column) == (1, 27)


def test_allotment_portions_above_one_with_remaining() -> None:
    source = (
        "send [COIN 10] ( source = @world destination = { 60% to @a 60% to @b remaining kept } )"
    )
    err = _raises(ns.InvalidAllotmentSum, source)
    assert "at most 1" in err.message


def test_negative_portion() -> None:
    source = "send [COIN 10] ( source = @world destination = { -1/3 to @a remaining to @b } )"
    err = _raises(ns.NegativePortion, source)
    assert (err.line, err.column) == (1, 50)


def test_missing_funds_carries_account_asset_needed_available() -> None:
    source = "send [USD/2 100] (\n  source = @alice\n  destination = @bob\n)"
    err = _raises(ns.MissingFundsError, source, balances={"alice": {"USD/2": 11}})
    assert isinstance(err, ns.MissingFundsError)
    assert (err.account, err.asset, err.needed, err.available) == ("alice", "USD/2", 100, 11)
    assert err.render(source, "pay.num") == (
        "pay.num:2:12: error: not enough funds from @alice: expected [USD/2 100], found only "
        "[USD/2 11] available\n"
        "  source = @alice\n"
        "           ^~~~~~"
    )


def test_missing_funds_of_a_compound_source_has_no_single_account() -> None:
    source = "send [COIN 10] ( source = { @a @b } destination = @c )"
    err = _raises(ns.MissingFundsError, source, balances={"a": {"COIN": 3}, "b": {"COIN": 4}})
    assert isinstance(err, ns.MissingFundsError)
    assert (err.account, err.needed, err.available, err.line, err.column) == (None, 10, 7, 1, 27)


def test_missing_funds_in_a_source_allotment_part() -> None:
    source = "send [COIN 100] ( source = { 10% from @a remaining from @world } destination = @d )"
    err = _raises(ns.MissingFundsError, source)
    assert isinstance(err, ns.MissingFundsError)
    assert (err.account, err.needed, err.available, err.column) == ("a", 10, 0, 39)


def test_missing_funds_colored() -> None:
    source = 'send [COIN 10] ( source = @a \\ "RED" destination = @b )'
    err = _raises(
        ns.MissingFundsError, source, balances={"a": {"COIN": 100}}, flags=[ff.ASSET_COLORS]
    )
    assert isinstance(err, ns.MissingFundsError)
    assert err.available == 0


def test_missing_funds_when_every_oneof_branch_fails() -> None:
    source = "send [GEM 1] ( source = oneof { @e1 @e2 } destination = @d )"
    err = _raises(ns.MissingFundsError, source, flags=[ff.ONEOF])
    assert (err.line, err.column) == (1, 25)


def test_negative_amount_in_send() -> None:
    source = "send [COIN -10] ( source = @world destination = @b )"
    err = _raises(ns.NegativeAmountError, source)
    assert isinstance(err, ns.NegativeAmountError)
    assert (err.line, err.column, err.amount, err.asset) == (1, 6, -10, "COIN")
    assert err.message == (
        "cannot send a negative amount: expected an amount >= 0, found [COIN -10]"
    )


def test_negative_amount_in_save() -> None:
    err = _raises(ns.NegativeAmountError, "save [COIN -1] from @a")
    assert (err.line, err.column) == (1, 6)


def test_unbounded_world_in_send_all() -> None:
    err = _raises(
        ns.InvalidUnboundedInSendAll, "send [COIN *] ( source = @world destination = @b )"
    )
    assert (err.line, err.column, err.name) == (1, 26, "world")


def test_unbounded_overdraft_in_send_all() -> None:
    source = "send [COIN *] ( source = { @a allowing unbounded overdraft } destination = @b )"
    err = _raises(ns.InvalidUnboundedInSendAll, source)
    assert (err.line, err.column, err.name) == (1, 28, "a")


def test_allotment_in_send_all() -> None:
    source = "send [COIN *] ( source = { 1/2 from @a remaining from @b } destination = @c )"
    err = _raises(ns.InvalidAllotmentInSendAll, source)
    assert (err.line, err.column) == (1, 26)


def test_negative_balance_from_balance_function() -> None:
    source = "vars { monetary $b = balance(@a, COIN) }"
    err = _raises(ns.NegativeBalanceError, source, balances={"a": {"COIN": -5}})
    assert isinstance(err, ns.NegativeBalanceError)
    assert (err.line, err.column, err.account, err.amount) == (1, 22, "a", -5)


def test_invalid_color() -> None:
    source = 'send [COIN 1] ( source = @a \\ "red" allowing unbounded overdraft destination = @b )'
    err = _raises(ns.InvalidColor, source, flags=[ff.ASSET_COLORS])
    assert (err.line, err.column) == (1, 31)


def test_scaling_the_world_is_refused() -> None:
    source = "send [EUR/2 *] ( source = @world with scaling through @swap destination = @b )"
    err = _raises(ns.InvalidUnboundedAddressInScalingAddress, source, flags=[ff.ASSET_SCALING])
    assert (err.line, err.column) == (1, 27)


def test_internal_error_on_an_asset_the_ledger_refuses() -> None:
    source = "send [ABCDEFGHIJKLMNOPQRSTUVWXYZ 1] ( source = @world destination = @b )"
    err = _raises(ns.InternalError, source)
    assert (err.line, err.column) == (1, 1)


# --- functions, metadata, features -------------------------------------------------------


def test_unbound_function_as_statement() -> None:
    err = _raises(ns.UnboundFunction, '\n  do_something("x")')
    assert (err.line, err.column, err.name) == (2, 3, "do_something")


def test_unbound_function_in_origin() -> None:
    err = _raises(ns.UnboundFunction, "vars { monetary $m = nope(@a) }")
    assert (err.line, err.column, err.name) == (1, 22, "nope")


def test_bad_arity() -> None:
    source = 'set_tx_meta("only-key")'
    err = _raises(ns.BadArity, source)
    assert isinstance(err, ns.BadArity)
    assert (err.line, err.column, err.expected, err.given) == (1, 1, 2, 1)
    assert err.render(source, "m.num") == (
        "m.num:1:1: error: wrong number of arguments to set_tx_meta(): expected 2 arguments, "
        "found 1\n"
        'set_tx_meta("only-key")\n'
        "^~~~~~~~~~~~~~~~~~~~~~~"
    )


def test_metadata_not_found() -> None:
    source = 'vars {\n  account $a\n  portion $p = meta($a, "commission")\n}'
    err = _raises(ns.MetadataNotFound, source, vars={"a": "shop"}, metadata={"shop": {}})
    assert isinstance(err, ns.MetadataNotFound)
    assert (err.line, err.column, err.account, err.key) == (3, 16, "shop", "commission")


def test_invalid_asset_read_from_metadata() -> None:
    source = 'vars { asset $a = meta(@acc, "k") }'
    err = _raises(ns.InvalidAsset, source, metadata={"acc": {"k": "not-an-asset"}})
    assert (err.line, err.column) == (1, 19)


def test_nested_meta() -> None:
    source = 'vars { number $x = 1 + meta(@acc, "k") }'
    err = _raises(
        ns.InvalidNestedMeta,
        source,
        metadata={"acc": {"k": "1"}},
        flags=[ff.MID_SCRIPT_FUNCTION_CALL],
    )
    assert (err.line, err.column) == (1, 24)


def test_interpolating_a_monetary_is_refused() -> None:
    source = 'vars { monetary $m }\nset_tx_meta("k", @user:$m)'
    err = _raises(
        ns.CannotCastToString, source, vars={"m": "USD 1"}, flags=[ff.ACCOUNT_INTERPOLATION]
    )
    # the whole interpolated literal, as the reference's TestAccountInvalidString
    assert (err.span.line, err.span.column, err.span.end_column) == (2, 18, 26)


def test_interpolation_producing_an_invalid_account() -> None:
    source = 'vars { string $s }\nset_tx_meta("k", @user:$s)'
    err = _raises(
        ns.InvalidAccountName, source, vars={"s": "has space"}, flags=[ff.ACCOUNT_INTERPOLATION]
    )
    assert (err.line, err.column, err.name) == (2, 18, "user:has space")


def test_invalid_feature_in_pragma() -> None:
    err = _raises(ns.InvalidFeature, '#![feature("experimental-nope")]\nset_tx_meta("k", 1)')
    assert (err.line, err.column, err.feature) == (1, 12, "experimental-nope")


FLAGGED = [
    (ff.OVERDRAFT_FUNCTION, "vars { monetary $m = overdraft(@a, COIN) }", (1, 22)),
    (ff.GET_ASSET_FUNCTION, "vars { asset $a = get_asset([COIN 1]) }", (1, 19)),
    (ff.GET_AMOUNT_FUNCTION, "vars { number $n = get_amount([COIN 1]) }", (1, 20)),
    (ff.ONEOF, "send [COIN 1] ( source = oneof { @world } destination = @b )", (1, 26)),
    (ff.ACCOUNT_INTERPOLATION, 'vars { number $id }\nset_tx_meta("k", @user:$id)', (2, 18)),
    (ff.MID_SCRIPT_FUNCTION_CALL, "vars { number $x = 1 + 2 }", (1, 20)),
    (
        ff.MID_SCRIPT_FUNCTION_CALL,
        "send balance(@a, COIN) ( source = @world destination = @b )",
        (1, 6),
    ),
    (ff.ASSET_COLORS, 'send [COIN 1] ( source = @world \\ "X" destination = @b )', (1, 35)),
    (
        ff.ASSET_SCALING,
        "send [EUR/2 1] ( source = @a with scaling through @s destination = @b )",
        (1, 27),
    ),
]


@pytest.mark.parametrize(("flag", "source", "position"), FLAGGED, ids=[f[0] for f in FLAGGED])
def test_experimental_features_need_their_flag(
    flag: str, source: str, position: tuple[int, int]
) -> None:
    # without the flag: a precise error
    err = _raises(ns.ExperimentalFeatureNotEnabled, source, vars={"id": "1"})
    assert isinstance(err, ns.ExperimentalFeatureNotEnabled)
    assert (err.flag, (err.line, err.column)) == (flag, position)
    # with the flag (from the caller, then from the script header): it runs
    balances = {"a": {"COIN": 5, "EUR": 1}}
    run_script(source, vars={"id": "1"}, balances=balances, flags=[flag])
    header = f'#![feature("{flag}")]\n'
    if not source.startswith("#!"):
        run_script(header + source, vars={"id": "1"}, balances=balances)


def test_feature_error_message() -> None:
    err = _raises(ns.ExperimentalFeatureNotEnabled, "vars { number $x = 1 + 2 }")
    assert err.message == (
        "this feature is experimental: expected the 'experimental-mid-script-function-call' "
        "feature flag to be enabled"
    )


def test_every_error_is_a_numscript_error_with_a_position() -> None:
    for error in (
        ns.ParseError,
        ns.UnboundVariable,
        ns.MissingFundsError,
        ns.InvalidVariableValue,
        ns.ExperimentalFeatureNotEnabled,
    ):
        assert issubclass(error, ns.NumscriptError)
    err = _raises(ns.UnboundVariable, "send $x ( source = @world destination = @b )")
    assert str(err).startswith("1:6: unbound variable $x")


def test_parse_error_at_end_of_input_is_rendered_on_the_last_line() -> None:
    source = "send [COIN 1] (\n"
    err = _raises(ns.ParseError, source, parse_only=True)
    assert (err.line, err.column) == (2, 1)
    assert err.render(source, "eof.num") == (
        "eof.num:2:1: error: expected 'source', found end of input\n\n^"
    )
