"""The classification rules: pure Python cases, and proof that the SQL rendering used by the
set-based matcher (`CLASSIFY_SQL`) gives the same outcome as `classify()` on every input."""

from __future__ import annotations

import pytest
from django.db import connection
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from reconciliation.matching import (
    CLASSIFY_SQL,
    Figures,
    Outcome,
    classify,
    related_ids,
    source_type_of,
)

# given / when / then in one line each: (figures, expected outcome)
CASES = [
    (Figures(True, True, s_net=941, s_fee=59, l_net=941, l_fee=59), Outcome.MATCHED),
    (Figures(True, True, s_net=941, s_fee=59, l_net=1000, l_fee=0), Outcome.FEE_MISSING),
    (Figures(True, True, s_net=941, s_fee=59, l_net=950, l_fee=50), Outcome.FEE_MISSING),
    (Figures(True, True, s_net=941, s_fee=59, l_net=930, l_fee=70), Outcome.AMOUNT_MISMATCH),
    (Figures(True, True, s_net=941, s_fee=59, l_net=900, l_fee=59), Outcome.AMOUNT_MISMATCH),
    # the net is right, the fee went through another account than platform:stripe_fees
    (Figures(True, True, s_net=-1500, s_fee=1500, l_net=-1500, l_fee=0), Outcome.FEE_MISSING),
    (Figures(True, True, s_net=941, s_fee=59, l_net=941, l_fee=70), Outcome.AMOUNT_MISMATCH),
    (Figures(True, False, s_net=941, s_fee=59), Outcome.MISSING_IN_LEDGER),
    (Figures(True, True, s_net=941, s_fee=59, l_net=0, l_fee=0), Outcome.MISSING_IN_LEDGER),
    (Figures(True, False, s_net=0, s_fee=0), Outcome.MATCHED),
    (Figures(False, True, l_net=941, l_fee=59, l_stale=True), Outcome.MISSING_AT_STRIPE),
    (Figures(False, True, l_net=941, l_fee=59, l_stale=False), Outcome.AWAITING_STRIPE),
    (Figures(False, True, linked=False, l_net=-250), Outcome.SUSPENSE),
    (Figures(True, True, unknown_category=True, s_net=5, l_net=5), Outcome.SUSPENSE),
    (Figures(True, True, s_net=941, s_fee=59, l_net=1882, l_fee=118), Outcome.MATCHED_TWICE),
    (Figures(True, True, s_net=-500, l_net=-1000), Outcome.MATCHED_TWICE),
    (Figures(True, True, s_net=-500, l_net=-1500), Outcome.MATCHED_TWICE),
    (
        Figures(True, True, s_net=941, s_fee=59, l_net=1941, l_fee=59, l_dup=2),
        Outcome.MATCHED_TWICE,
    ),
    # two ledger transactions carrying one txn but summing right are a split booking, fine
    (Figures(True, True, s_net=941, s_fee=59, l_net=941, l_fee=59, l_dup=2), Outcome.MATCHED),
    (Figures(True, True, s_net=-500, l_net=500), Outcome.AMOUNT_MISMATCH),  # wrong direction
]


@pytest.mark.parametrize(("figures", "expected"), CASES)
def test_classify(figures: Figures, expected: Outcome) -> None:
    assert classify(figures) == expected


def _sql_classify(rows: list[Figures]) -> list[str]:
    columns = (
        "CAST(%s AS INTEGER) AS i, CAST(%s AS INTEGER) AS has_s, CAST(%s AS INTEGER) AS has_l, "
        "CAST(%s AS INTEGER) AS s_unknown, CAST(%s AS INTEGER) AS linked, "
        "CAST(%s AS INTEGER) AS l_stale, CAST(%s AS BIGINT) AS s_net, "
        "CAST(%s AS BIGINT) AS s_fee, CAST(%s AS BIGINT) AS l_net, CAST(%s AS BIGINT) AS l_fee, "
        "CAST(%s AS INTEGER) AS l_dup"
    )
    selects, params = [], []
    for i, f in enumerate(rows):
        selects.append(f"SELECT {columns}")
        params += [
            i,
            int(f.has_stripe),
            int(f.has_ledger),
            int(f.unknown_category),
            int(f.linked),
            int(f.l_stale),
            f.s_net,
            f.s_fee,
            f.l_net,
            f.l_fee,
            f.l_dup,
        ]
    sql = (
        f"SELECT x.i, {CLASSIFY_SQL.replace('%', '%%')} FROM ("
        + " UNION ALL ".join(selects)
        + ") x ORDER BY x.i"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return [outcome for _i, outcome in cursor.fetchall()]


@pytest.mark.django_db
def test_sql_rendering_agrees_on_the_fixed_cases() -> None:
    figures = [f for f, _expected in CASES]
    assert _sql_classify(figures) == [str(expected) for _f, expected in CASES]


AMOUNT = st.integers(min_value=-(10**9), max_value=10**9)
SMALL = st.sampled_from([0, 1, 30, 59, 100, 941, 1000, 1500, -500, -941])


@st.composite
def figures(draw: st.DrawFn) -> Figures:
    s_net = draw(st.one_of(SMALL, AMOUNT))
    s_fee = draw(st.one_of(SMALL, st.integers(min_value=0, max_value=10**6)))
    relation = draw(st.sampled_from(["equal", "multiple", "fee_gap", "zero", "free"]))
    if relation == "equal":
        l_net, l_fee = s_net, s_fee
    elif relation == "multiple":
        k = draw(st.integers(min_value=-3, max_value=4))
        l_net, l_fee = k * s_net, k * s_fee
    elif relation == "fee_gap":
        l_fee = draw(st.integers(min_value=0, max_value=max(0, s_fee)))
        l_net = s_net + (s_fee - l_fee)
    elif relation == "zero":
        l_net, l_fee = 0, 0
    else:
        l_net, l_fee = draw(st.one_of(SMALL, AMOUNT)), draw(st.one_of(SMALL, AMOUNT))
    return Figures(
        has_stripe=draw(st.booleans()),
        has_ledger=draw(st.booleans()),
        unknown_category=draw(st.booleans()),
        linked=draw(st.booleans()),
        s_net=s_net,
        s_fee=s_fee,
        l_net=l_net,
        l_fee=l_fee,
        l_dup=draw(st.integers(min_value=0, max_value=3)),
        l_stale=draw(st.booleans()),
    )


@pytest.mark.django_db
@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(batch=st.lists(figures(), min_size=1, max_size=40))
def test_sql_rendering_agrees_with_python_on_any_input(batch: list[Figures]) -> None:
    assert _sql_classify(batch) == [str(classify(f)) for f in batch]


def test_source_type_and_related_ids() -> None:
    assert source_type_of("ch_1", None) == "charge"
    assert source_type_of("trr_1", None) == "transfer_reversal"
    assert source_type_of("xx_1", {"object": "topup"}) == "topup"
    assert source_type_of(None, None) == ""
    assert related_ids("re_1", {"id": "re_1", "charge": "ch_1", "payment_intent": None}) == {
        "re_1",
        "ch_1",
    }
    assert related_ids("ch_1", {"payment_intent": {"id": "pi_1"}}) == {"ch_1", "pi_1"}
