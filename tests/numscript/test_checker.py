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


# --- the reference checker's cases (formancehq/numscript internal/analysis/check_test.go) ---


def _diagnostics(source: str) -> list[tuple[str, str, str, str]]:
    """(severity, code, the source text under the span, message)."""
    return [
        (d.severity, d.code, source[d.span.start : d.span.end] if d.span else "", d.message)
        for d in check(source)
    ]


def _nth(source: str, text: str, n: int) -> int:
    """Offset of the n-th (0-based) occurrence of ``text``, like the reference's
    ``RangeOfIndexed``."""
    offset = -1
    for _ in range(n + 1):
        offset = source.index(text, offset + 1)
    return offset


def test_asset_mismatch_between_the_sent_value_and_a_cap() -> None:
    # TestCheckAssetMismatch
    source = "send [USD 100] (\n  source = max [EUR 10] from @a\n  destination = @dest\n)"
    [diagnostic] = check(source)
    assert (diagnostic.code, diagnostic.span.start, diagnostic.span.end) == (
        "asset-mismatch",
        _nth(source, "[EUR 10]", 0),
        _nth(source, "[EUR 10]", 0) + len("[EUR 10]"),
    )
    assert diagnostic.message == "mismatched asset: expected USD, found EUR"


def test_asset_is_inferred_across_uses_of_a_variable() -> None:
    # TestCheckAssetMismatchInVar: $mon is capped in EUR, then in USD
    source = """vars {
  monetary $mon
}
send [EUR 0] (
  source = max $mon from @a
  destination = @b
)
send [USD 0] (
  source = max $mon from @a
  destination = @b
)
"""
    [diagnostic] = check(source)
    assert diagnostic.code == "asset-mismatch"
    assert diagnostic.span.start == _nth(source, "$mon", 2)
    assert diagnostic.message == "mismatched asset: expected USD, found EUR"


def test_balance_fixes_the_asset_of_its_variable() -> None:
    # TestCheckBalanceAssetConstraint
    source = """vars {
  monetary $mon = balance(@acc, USD/2)
}
send [USD 42] (
  source = max $mon from @a
  destination = @b
)
"""
    [diagnostic] = check(source)
    assert diagnostic.code == "asset-mismatch"
    assert diagnostic.span.start == _nth(source, "$mon", 1)
    assert diagnostic.message == "mismatched asset: expected USD, found USD/2"


def test_asset_mismatch_through_overdraft_bound_get_asset_and_destination_caps() -> None:
    source = """vars {
  asset $a = get_asset([EUR/2 1])
}
send [USD/2 1] (
  source = @x allowing overdraft up to [$a 5]
  destination = { max [GBP 1] to @y remaining kept }
)
"""
    assert [(code, text) for _, code, text, _ in _diagnostics(source)] == [
        ("experimental-feature", "get_asset([EUR/2 1])"),
        ("asset-mismatch", "[$a 5]"),
        ("asset-mismatch", "[GBP 1]"),
    ]


def test_consistent_assets_are_not_reported() -> None:
    source = """vars {
  monetary $fee
  monetary $cap = balance(@a, USD/2)
}
send $fee ( source = max $cap from @a destination = @b )
send [USD/2 1] + [USD/2 2] ( source = @a allowing overdraft up to $cap destination = @b )
"""
    assert [code for _, code, _, _ in _diagnostics(source)] == ["bound-asset"]


def test_bound_asset_warning_for_an_asset_variable() -> None:
    # TestWarningWhenBoundAsset
    source = """vars {
  asset $ass
}
send [USD/2 10] (
  source = max [$ass 2] from @world
  destination = @d
)
"""
    [(severity, code, text, message)] = _diagnostics(source)
    assert (severity, code, text) == ("warning", "bound-asset", "asset $ass")
    assert message.startswith("$ass is inferred to always be USD/2")


def test_bound_asset_warning_for_a_monetary_variable() -> None:
    # TestWarningWhenBoundMonetary
    source = """vars {
  monetary $mon
}
send $mon (
  source = max [COIN 2] from @world
  destination = @d
)
"""
    [(severity, code, text, message)] = _diagnostics(source)
    assert (severity, code, text) == ("warning", "bound-asset", "monetary $mon")
    assert message.startswith("$mon is inferred to always be in COIN")


def test_no_bound_asset_warning_once_a_mismatch_is_reported() -> None:
    source = """vars {
  monetary $mon
}
send $mon ( source = max [COIN 2] from @world destination = @d )
send [EUR 1] ( source = max $mon from @a destination = @d )
"""
    assert [code for _, code, _, _ in _diagnostics(source)] == ["asset-mismatch"]


def test_emptied_account_with_an_empty_colour_is_the_same_account() -> None:
    # TestInorderRedundantWhenEmptyColored; a real colour is another balance
    # (TestInorderRedundantWhenColored)
    flag = '#![feature("experimental-asset-colors")]\n'
    empty = flag + 'send [COIN 100] ( source = { @a @a \\ "" } destination = @dest )'
    colored = flag + 'send [COIN 100] ( source = { @a @a \\ "X" } destination = @dest )'
    assert [(code, text) for _, code, text, _ in _diagnostics(empty)] == [("emptied-account", "@a")]
    [diagnostic] = check(empty)
    assert diagnostic.span.start == _nth(empty, "@a", 1)
    assert check(colored) == []


def test_emptied_account_is_tracked_over_the_whole_statement() -> None:
    source = """send [COIN 10] (
  source = { @a { @b @a } max [COIN 1] from @b }
  destination = @d
)
send [COIN 10] ( source = { max [COIN 1] from @c @c } destination = @d )
"""
    assert [
        (code, text, d.line)
        for (_, code, text, _), d in zip(_diagnostics(source), check(source), strict=True)
    ] == [("emptied-account", "@a", 2), ("emptied-account", "@b", 2)]


def test_duplicate_variable_keeps_the_first_declaration() -> None:
    # TestDuplicateVariable: the duplicate is reported; uses refer to the first ($x account)
    source = """vars {
  account $x
  account $y
  portion $x
}
send [C 10] (
  source = { $x $y }
  destination = @dest
)"""
    [diagnostic] = check(source)
    assert (diagnostic.code, diagnostic.span.start) == (
        "duplicate-variable",
        _nth(source, "$x", 1),
    )


def test_unbounded_send_all_span_is_the_account() -> None:
    # the reference reports an unbounded overdraft in a send-all on its address
    source = "send [COIN *] ( source = @s allowing unbounded overdraft destination = @b )"
    [(severity, code, text, _)] = _diagnostics(source)
    assert (severity, code, text) == ("error", "unbounded-send-all", "@s")


def test_world_overdraft_span_is_the_account() -> None:
    source = "send [COIN 1] ( source = @world allowing overdraft up to [COIN 1] destination = @b )"
    [(severity, code, text, _)] = _diagnostics(source)
    assert (severity, code, text) == ("warning", "world-overdraft", "@world")


def test_interpolation_flag_warning_spans_the_literal() -> None:
    source = "vars { string $id }\nsend [COIN 1] ( source = @world destination = @user:$id )"
    [(severity, code, text, _)] = _diagnostics(source)
    assert (severity, code, text) == ("warning", "experimental-feature", "@user:$id")
