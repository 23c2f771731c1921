"""The credit allocation rule (pure, no database): a credit is spread over the original's
lines in proportion to what remains on each, in integer minor units, summing exactly, never
taking more from a line than remains on it; and the credit notes planned from it."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from invoicing.domain import (
    CreditEvent,
    InvoicingRuleError,
    IssuedDoc,
    IssuedLine,
    OrderFacts,
    allocate,
    plan_commission_invoice,
    plan_credit_notes,
    tax_split,
)

AT = datetime(2026, 11, 5, 12, tzinfo=UTC)
R = "restaurants:007"


def test_allocate_is_proportional_with_the_largest_remainders_rounded_up():
    # given: 2000 at 10% and 500 at 20%, a 1000 credit: exactly 800 / 200
    assert allocate(1000, [2000, 500]) == [800, 200]
    # 100 over three equal lines: 33.33 each, the one unit left goes to the first (a tie)
    assert allocate(100, [300, 300, 300]) == [34, 33, 33]
    # the largest remainder wins, wherever it is: 10 over (100, 200, 600) is 1.11, 2.22, 6.67
    assert allocate(10, [100, 200, 600]) == [1, 2, 7]


def test_allocate_includes_discount_lines_in_proportion():
    # given: food 2000, delivery 500, a -200 coupon (2300 remain); a 230 credit is 10% of each
    assert allocate(230, [2000, 500, -200]) == [200, 50, -20]
    # the whole remainder takes every line back exactly
    assert allocate(2300, [2000, 500, -200]) == [2000, 500, -200]


@pytest.mark.parametrize(("amount", "remaining"), [(-1, [10]), (11, [10]), (5, [10, -6])])
def test_allocate_refuses_what_the_lines_cannot_take(amount, remaining):
    with pytest.raises(ValueError):
        allocate(amount, remaining)


@st.composite
def document_and_credits(draw):
    """Lines (at least one positive; discounts no larger than the positive lines) and a
    sequence of credits that together stay within the document's total."""
    positives = draw(st.lists(st.integers(1, 50_000), min_size=1, max_size=5))
    discounts = draw(st.lists(st.integers(1, 5_000), max_size=2))
    lines = list(positives)
    for discount in discounts:
        room = sum(lines) - 1  # the document keeps a positive total
        if room > 0:
            lines.append(-min(discount, room))
    total = sum(lines)
    credits = []
    left = total
    for _ in range(draw(st.integers(1, 6))):
        if left == 0:
            break
        amount = draw(st.integers(1, left))
        credits.append(amount)
        left -= amount
    if draw(st.booleans()) and left:
        credits.append(left)  # sometimes the rest: every line must end exactly at zero
    rates = draw(st.lists(st.sampled_from([0, 550, 1000, 2000]), min_size=len(lines)))
    return lines, rates[: len(lines)], credits


@settings(max_examples=400, deadline=None)
@given(document_and_credits())
def test_allocations_sum_exactly_and_never_exceed_what_remains_on_a_line(case):
    lines, _, credits = case
    remaining = list(lines)
    for amount in credits:
        shares = allocate(amount, remaining)
        assert sum(shares) == amount
        for share, rem, gross in zip(shares, remaining, lines, strict=True):
            # a share stays between 0 and what remains, in the line's sign
            assert (0 <= share <= rem) if gross > 0 else (rem <= share <= 0)
        remaining = [rem - share for rem, share in zip(remaining, shares, strict=True)]
    if sum(credits) == sum(lines):
        assert remaining == [0] * len(lines)


def _facts(order_id: int = 42) -> OrderFacts:
    return OrderFacts(
        order_id=order_id,
        asset="USD/2",
        customer="customer:1",
        restaurant=R,
        restaurant_id=7,
        split_tx=1,
        split_at=AT,
    )


@settings(max_examples=200, deadline=None)
@given(
    document_and_credits(),
    st.sampled_from(["A", "B", "C"]),
    st.lists(st.sampled_from(["platform:losses", R, "riders:003"]), min_size=1, max_size=3),
)
def test_credit_notes_split_each_refund_over_the_lines_at_their_rates(case, model, bearers):
    # given: the order's customer document with mixed rates, and a sequence of refunds, each
    # borne by one party, planned one after the other (each sees what the previous took)
    lines, rates, credits = case
    role = {"A": "platform", "B": "restaurant", "C": "platform"}[model]
    original = IssuedDoc(
        f"order:42:{role}",
        [
            IssuedLine(i + 1, "food", g, r)
            for i, (g, r) in enumerate(zip(lines, rates, strict=True))
        ],
    )
    issued = {role: original}
    credited_per_line = [0] * len(lines)
    for n, amount in enumerate(credits):
        bearer = bearers[n % len(bearers)]
        if model == "A" and bearer == R:
            bearer = "platform:losses"  # A: the restaurant's share goes to its own document
        event = CreditEvent(f"refund:{n}", 100 + n, AT, {bearer: amount})

        # when
        notes = plan_credit_notes(_facts(), model, event, issued)

        # then: one credit note on the original, totalling the refund exactly, one line per
        # original line credited, at that line's rate and with that line's rounding rule
        assert [note.original_key for note in notes] == [original.key]
        assert sum(line.gross for line in notes[0].lines) == -amount
        for line in notes[0].lines:
            position = line.original_position
            assert position is not None
            assert line.tax_bps == rates[position - 1]
            assert line.net_tax == tax_split(line.gross, line.tax_bps)
            credited_per_line[position - 1] += -line.gross
    for gross, credited in zip(lines, credited_per_line, strict=True):
        assert (0 <= credited <= gross) if gross > 0 else (gross <= credited <= 0)
    # and nothing more can be credited than what was left
    left = sum(lines) - sum(credits)
    with pytest.raises(InvoicingRuleError) as excinfo:
        plan_credit_notes(
            _facts(), model, CreditEvent("refund:x", 9, AT, {bearers[0]: left + 1}), issued
        )
    assert excinfo.value.code == "credit_exceeds_documents"


def test_model_b_platform_share_is_tagged_to_the_restaurant_and_compensated_at_month_end():
    # given: a model B order delivered in October, a 400 refund borne by the platform in
    # November
    facts = _facts()
    facts.split_at = datetime(2026, 10, 30, tzinfo=UTC)
    facts.restaurant_amt, facts.fees_amt, facts.rider_amt = 1700, 300, 500
    event = CreditEvent("refund:9", 77, AT, {"platform:losses": 400})
    facts.credits.append(event)
    issued = {
        "restaurant": IssuedDoc(
            "order:42:restaurant",
            [IssuedLine(1, "food", 2000, 1000), IssuedLine(2, "delivery", 500, 2000)],
        )
    }

    # when
    notes = plan_credit_notes(facts, "B", event, issued)
    october = plan_commission_invoice(R, "2026-10", [facts], 2000)
    november = plan_commission_invoice(R, "2026-11", [facts], 2000)

    # then: the restaurant credits its customer (its sale is reduced), 320 food at 10% and
    # 80 delivery at 20%, tagged with its account ...
    assert [(x.gross, x.tax_bps, x.account) for x in notes[0].lines] == [
        (-320, 1000, R),
        (-80, 2000, R),
    ]
    # ... and the platform gives it back on its own document to the restaurant: the
    # commission invoice of the refund's month, out of platform:losses
    assert october is not None and november is not None
    assert [x.kind for x in october.lines] == ["commission", "delivery"]
    assert [(x.kind, x.gross, x.account, x.counter_account) for x in november.lines] == [
        ("compensation", -400, "platform:losses", R)
    ]
