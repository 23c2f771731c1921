"""The spec runner's rules (upstream's `.num.specs.json` format): merging, focus/skip, every
assertion, file errors."""

from __future__ import annotations

import json
from typing import Any

from ledger.numscript.cli import format_test_report
from ledger.numscript.specs import SpecFileResult, check_specs, json_diff

SEND = "vars { monetary $amt }\nsend $amt ( source = { @a @b } destination = { 1/2 to @c remaining to @d } )"


def _check(specs: dict[str, Any], script: str = SEND) -> SpecFileResult:
    return check_specs(script, json.dumps(specs), script_path="x.num", spec_path="x.num.specs.json")


def _statuses(result: SpecFileResult) -> list[str]:
    assert result.error is None, result.error
    return [c.status for c in result.cases]


BASE: dict[str, Any] = {
    "balances": [{"account": "a", "asset": "USD", "amount": 3}],
    "variables": {"amt": "USD 4"},
}


def test_case_balances_and_variables_override_the_file_defaults() -> None:
    specs = {
        **BASE,
        "testCases": [
            {
                "it": "override",
                "balances": [
                    {"account": "a", "asset": "USD", "amount": 10},
                ],
                "variables": {"amt": "USD 2"},
                "expect.postings": [
                    {"source": "a", "destination": "c", "amount": 1, "asset": "USD"},
                    {"source": "a", "destination": "d", "amount": 1, "asset": "USD"},
                ],
            }
        ],
    }
    assert _statuses(_check(specs)) == ["pass"]


def test_every_success_assertion() -> None:
    postings = [
        {"source": "a", "destination": "c", "amount": 2, "asset": "USD"},
        {"source": "a", "destination": "d", "amount": 1, "asset": "USD"},
        {"source": "b", "destination": "d", "amount": 1, "asset": "USD"},
    ]
    case = {
        "it": "all",
        "balances": [{"account": "b", "asset": "USD", "amount": 5}],
        "expect.postings": postings,
        "expect.txMetadata": {},
        "expect.metadata": {},
        "expect.endBalances": [
            {"account": "a", "asset": "USD", "amount": 0},
            {"account": "b", "asset": "USD", "amount": 4},
            {"account": "c", "asset": "USD", "amount": 2},
            {"account": "d", "asset": "USD", "amount": 2},
        ],
        "expect.endBalances.include": [{"account": "d", "asset": "USD", "amount": 2}],
        "expect.movements": list(reversed(postings)),
    }
    assert _statuses(_check({**BASE, "testCases": [case]})) == ["pass"]
    wrong = {
        **case,
        "expect.endBalances.include": [{"account": "d", "asset": "USD", "amount": 3}],
        "expect.movements": postings[:2],
    }
    result = _check({**BASE, "testCases": [wrong]})
    assert [f.assertion for f in result.cases[0].failures] == [
        "expect.endBalances.include",
        "expect.movements",
    ]


def test_postings_order_matters_and_null_means_no_assertion() -> None:
    reordered = [
        {"source": "b", "destination": "d", "amount": 1, "asset": "USD"},
        {"source": "a", "destination": "c", "amount": 2, "asset": "USD"},
        {"source": "a", "destination": "d", "amount": 1, "asset": "USD"},
    ]
    cases = [
        {
            "it": "order",
            "balances": [{"account": "b", "asset": "USD", "amount": 5}],
            "expect.postings": reordered,
        },
        {
            "it": "null",
            "balances": [{"account": "b", "asset": "USD", "amount": 5}],
            "expect.postings": None,
        },
    ]
    assert _statuses(_check({**BASE, "testCases": cases})) == ["fail", "pass"]


def test_missing_funds_expectations() -> None:
    cases = [
        {"it": "expected", "expect.error.missingFunds": True, "expect.postings": [{"bogus": 1}]},
        {"it": "unexpected"},
        {
            "it": "expected but ran",
            "balances": [{"account": "b", "asset": "USD", "amount": 5}],
            "expect.error.missingFunds": True,
        },
    ]
    result = _check({**BASE, "testCases": cases})
    assert _statuses(result) == ["pass", "fail", "fail"]
    assert result.cases[1].failures[0].assertion == "expect.error.missingFunds"


def test_negative_amount_expectation() -> None:
    specs = {
        "variables": {"amt": "USD -1"},
        "testCases": [
            {"it": "neg", "expect.error.negativeAmount": True},
            {"it": "not expected"},
        ],
    }
    assert _statuses(_check(specs)) == ["pass", "fail"]


def test_focus_skips_the_other_cases_and_skip_makes_the_run_fail() -> None:
    specs = {
        **BASE,
        "variables": {"amt": "USD 1"},
        "testCases": [
            {"it": "a", "focus": True},
            {"it": "b"},
            {"it": "c", "skip": True, "focus": True},
        ],
    }
    result = _check(specs)
    assert _statuses(result) == ["pass", "skip", "skip"]
    report = format_test_report([result])
    assert not report.ok
    assert report.text.splitlines()[-1] == "1 passed, 0 failed"


def test_tx_and_account_metadata_assertions() -> None:
    script = 'set_tx_meta("n", 2/4)\nset_account_meta(@acc, "k", [USD 3])'
    specs = {
        "testCases": [
            {
                "it": "ok",
                "expect.txMetadata": {"n": "1/2"},
                "expect.metadata": {"acc": {"k": "USD 3"}},
            },
            {"it": "ko", "expect.txMetadata": {"n": "2/4"}},
        ]
    }
    assert _statuses(_check(specs, script)) == ["pass", "fail"]


def test_metadata_merges_per_account_and_key() -> None:
    script = 'vars {\n  string $x = meta(@acc, "x")\n  string $y = meta(@acc, "y")\n}\nset_tx_meta("xy", $x)\nset_tx_meta("y", $y)'
    specs = {
        "metadata": {"acc": {"x": "1", "y": "2"}},
        "testCases": [
            {
                "it": "merge",
                "metadata": {"acc": {"y": "3"}},
                "expect.txMetadata": {"xy": "1", "y": "3"},
            },
        ],
    }
    assert _statuses(_check(specs, script)) == ["pass"]


def test_file_level_errors() -> None:
    dup = {
        "balances": [{"account": "a", "asset": "USD", "amount": 1}] * 2,
        "testCases": [{"it": "x"}],
    }
    assert "duplicate entry" in (_check(dup).error or "")
    assert "Empty test suite" in (_check({"testCases": []}).error or "")
    assert "invalid JSON" in (check_specs(SEND, "{nope").error or "")
    float_amount = {
        "testCases": [{"it": "x", "balances": [{"account": "a", "asset": "USD", "amount": 1.5}]}]
    }
    assert "integer" in (_check(float_amount).error or "")
    broken = _check({"testCases": [{"it": "x"}]}, "send [USD 1] ( source = @a destination = )")
    assert broken.error is not None and "x.num:1:" in broken.error


def test_any_other_runtime_error_aborts_the_file() -> None:
    result = _check({"testCases": [{"it": "a", "variables": {"amt": "USD 1"}}, {"it": "b"}]})
    assert result.error is not None and "missing variable $amt" in result.error
    assert (result.passed, result.failed) == (0, 2)


def test_unknown_keys_are_ignored() -> None:
    specs = {
        **BASE,
        "$schema": "x",
        "whatever": 1,
        "testCases": [
            {"it": "a", "balances": [{"account": "b", "asset": "USD", "amount": 1}], "note": "hi"},
        ],
    }
    assert _statuses(_check(specs)) == ["pass"]


def test_json_diff_marks_expected_and_received_lines() -> None:
    assert json_diff({"a": 1}, {"a": 2}) == ["  {", '-   "a": 1', '+   "a": 2', "  }"]
