"""Static diagnostics of `check()`."""

from __future__ import annotations

from ledger.numscript import Diagnostic, check


def _found(source: str) -> list[tuple[str, str, int, int]]:
    return [(d.severity, d.code, d.line, d.column) for d in check(source)]


def test_valid_script_has_no_diagnostics() -> None:
    source = """
    vars { account $order  monetary $fee  portion $cut = meta($order, "cut") }
    send $fee ( source = $order destination = { $cut to @p remaining to @r } )
    """
    assert check(source) == []


def test_parse_error_is_a_diagnostic() -> None:
    [diagnostic] = check("send [COIN 1] (")
    assert isinstance(diagnostic, Diagnostic)
    assert (diagnostic.severity, diagnostic.code, diagnostic.line, diagnostic.column) == (
        "error",
        "parse-error",
        1,
        16,
    )


def test_variables() -> None:
    source = 'vars {\n  money $a\n  number $n\n  number $n\n  account $unused\n}\nset_tx_meta("k", $n + $ghost)'
    assert _found(source) == [
        ("error", "invalid-type", 2, 3),
        ("warning", "unused-variable", 2, 9),
        ("error", "duplicate-variable", 4, 10),
        ("warning", "unused-variable", 5, 11),
        ("error", "unbound-variable", 7, 23),
    ]


def test_type_errors() -> None:
    source = 'vars { number $n }\nsend $n ( source = "x" destination = @a )'
    assert _found(source) == [
        ("error", "type-mismatch", 2, 6),
        ("error", "type-mismatch", 2, 20),
    ]


def test_functions_and_arity() -> None:
    source = 'vars { monetary $m = balance(@a) }\nset_tx_meta("k")\nfoo(1)\nset_tx_meta("k", meta(@a, "x"))'
    assert _found(source) == [
        ("warning", "unused-variable", 1, 17),
        ("error", "bad-arity", 1, 22),
        ("error", "bad-arity", 2, 1),
        ("error", "unbound-function", 3, 1),
        ("warning", "experimental-feature", 4, 18),
        ("error", "nested-meta", 4, 18),
    ]


def test_allotments() -> None:
    source = """send [COIN 10] (
  source = @world
  destination = {
    1/2 to { 60% to @a 60% to @b remaining kept }
    remaining to { 1/2 to @c 1/2 to @d remaining kept }
    1/3 kept
  }
)"""
    found = _found(source)
    assert ("warning", "remaining-not-last", 5, 5) in found
    assert ("error", "bad-allotment-sum", 4, 12) in found
    assert ("warning", "redundant-remaining", 5, 40) in found
    assert ("error", "bad-allotment-sum", 3, 17) not in found  # 1/2 + 1/3 + remaining is fine


def test_bad_sum_and_division_by_zero() -> None:
    source = 'send [COIN 1] ( source = @world destination = { 1/2 to @a 1/3 to @b } )\nset_tx_meta("k", 1/0)'
    assert _found(source) == [
        ("error", "bad-allotment-sum", 1, 47),
        ("error", "divide-by-zero", 2, 18),
    ]


def test_send_all_and_unreachable_sources() -> None:
    source = """send [COIN *] ( source = { @a @world } destination = @b )
send [COIN *] ( source = { 1/2 from @a remaining from @b } destination = @c )
send [COIN 5] ( source = { @world @a @a } destination = @c )
send [COIN 5] ( source = @world allowing overdraft up to [COIN 1] destination = @c )
send [COIN 5] ( source = max [EUR 1] from @a destination = @c )"""
    assert _found(source) == [
        ("error", "unbounded-send-all", 1, 31),
        ("error", "allotment-send-all", 2, 26),
        ("warning", "unreachable-source", 3, 35),
        ("warning", "emptied-account", 3, 38),
        ("warning", "world-overdraft", 4, 26),
        ("error", "asset-mismatch", 5, 30),
    ]


def test_feature_flags_from_header_and_comment_pragmas() -> None:
    source = "send [COIN 1] ( source = oneof { @a @world } destination = @b )"
    assert _found(source) == [("warning", "experimental-feature", 1, 26)]
    assert check("// @feature_flag experimental-oneof\n" + source) == []
    assert check('#![feature("experimental-oneof")]\n' + source) == []
    assert _found('#![feature("nope")]') == [("error", "invalid-feature", 1, 12)]


def test_rendering_a_diagnostic() -> None:
    source = "vars { number $n }\nsend $n ( source = @a destination = @b )"
    [diagnostic] = check(source)
    assert diagnostic.render(source, "t.num") == (
        "t.num:2:6: error: type mismatch: expected a value of type monetary, found number\n"
        "send $n ( source = @a destination = @b )\n"
        "     ^~"
    )
