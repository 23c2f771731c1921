"""Pure rules, no database: the plan, patterns, the chart, canonical encodings."""

from datetime import UTC, datetime

import pytest

from ledger.domain import (
    MAX_AMOUNT,
    Chart,
    PostingInput,
    chain_hash,
    format_amount,
    pattern_matches,
    pattern_prefix,
    plan_postings,
    request_fingerprint,
    transaction_canonical,
)
from ledger.errors import InvalidAmount, InvalidPattern


def P(s: str, d: str, a: int, asset: str = "USD/2") -> PostingInput:
    return PostingInput(s, d, asset, a)


def test_plan_aggregates_volumes_and_sorts_keys_in_lock_order():
    plan = plan_postings(
        [
            (
                [
                    P("stripe:balance", "orders:1", 100),
                    P("orders:1", "b", 60),
                    P("orders:1", "a", 40),
                ],
                {"stripe:balance": None},
            )
        ]
    )
    assert plan.addresses == ["a", "b", "orders:1", "stripe:balance"]
    assert [(k.address, k.input, k.output, k.required) for k in plan.keys] == [
        ("a", 40, 0, None),
        ("b", 60, 0, None),
        ("orders:1", 100, 100, 0),  # credited first: needs no funds of its own, may not dip
        ("stripe:balance", 0, 100, None),  # unbounded overdraft: not checked
    ]


def test_plan_required_balance_follows_posting_order_and_bounds():
    # debit 50, credit 30, debit 50: the balance dips to -50 then to -70
    plan = plan_postings([([P("x", "y", 50), P("w", "x", 30), P("x", "y", 50)], {"x": 20})])
    key = {k.address: k for k in plan.keys}["x"]
    assert key.required == 50  # must start at 50 to stay >= -20 after reaching -70
    assert (key.needed, key.bound) == (70, 20)
    assert {k.address: k.required for k in plan.keys}["w"] == 30
    assert {k.address: k.required for k in plan.keys}["world" if False else "y"] is None


def test_plan_treats_world_and_unchecked_batches_as_unchecked():
    assert plan_postings([([P("world", "a", 5)], {})]).keys[1].required is None
    assert all(
        k.required is None for k in plan_postings([([P("a", "b", 5)], {})], check=False).keys
    )


def test_plan_refuses_volumes_beyond_storage():
    with pytest.raises(InvalidAmount):
        plan_postings([([P("world", "a", MAX_AMOUNT), P("world", "a", 1)], {})])


@pytest.mark.parametrize(
    ("pattern", "address", "matches"),
    [
        ("restaurants:*", "restaurants:1", True),
        ("restaurants:*", "restaurants:1:payouts:2", False),
        ("restaurants:*:payouts:*", "restaurants:1:payouts:2", True),
        ("restaurants:**", "restaurants:1:payouts:2", True),
        ("restaurants:**", "restaurants", False),
        ("*", "world", True),
        ("**", "a:b:c", True),
        ("platform:fees", "platform:fees", True),
        ("platform:fees", "platform:feesx", False),
    ],
)
def test_patterns(pattern, address, matches):
    assert pattern_matches(pattern, address) is matches


def test_pattern_prefix_and_invalid_patterns():
    assert pattern_prefix("restaurants:*:payouts:*") == "restaurants:"
    assert pattern_prefix("*") == ""
    assert pattern_prefix("a:b") == "a:b"
    for bad in ("", "a::b", "a:%", "a:b*"):
        with pytest.raises(InvalidPattern):
            pattern_matches(bad, "a")


def test_chart_first_match_wins():
    chart = Chart.from_setting(
        [("platform:fees", "revenue"), ("platform:**", "equity"), ("world", "equity")]
    )
    assert chart.classify("platform:fees") == "revenue"
    assert chart.classify("platform:reserve") == "equity"
    assert chart.classify("orders:1") is None
    with pytest.raises(InvalidPattern):
        Chart.from_setting([("x", "income")])


def test_format_amount():
    assert format_amount("USD/2", 5900) == "59.00"
    assert format_amount("USD/2", -5) == "-0.05"
    assert format_amount("JPY", 500) == "500"
    assert format_amount("BTC/8", 1) == "0.00000001"


def test_canonical_encoding_is_stable_and_sorted():
    ts = datetime(2024, 5, 1, 12, 0, 0, 123, tzinfo=UTC)
    canonical = transaction_canonical(
        id=7,
        reference=None,
        timestamp=ts,
        inserted_at=ts,
        metadata={"b": 1, "a": "é"},
        postings=[("world", "a", "USD/2", 5)],
        reverts=None,
    )
    assert (
        canonical
        == (
            '{"id":7,"inserted_at":"2024-05-01T12:00:00.000123Z","metadata":{"a":"é","b":1},'
            '"postings":[["world","a","USD/2",5]],"reference":null,"reverts":null,'
            '"timestamp":"2024-05-01T12:00:00.000123Z"}'
        ).encode()
    )
    assert chain_hash("0" * 64, canonical) != chain_hash("1" * 64, canonical)


def test_fingerprint_depends_on_content_not_on_dict_order():
    a = request_fingerprint(postings=[P("a", "b", 1)], metadata={"x": 1, "y": 2})
    b = request_fingerprint(postings=[P("a", "b", 1)], metadata={"y": 2, "x": 1})
    c = request_fingerprint(postings=[P("a", "b", 2)], metadata={"x": 1, "y": 2})
    assert a == b != c
