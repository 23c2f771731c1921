"""Properties of any run (Hypothesis): postings conserve the sent amount, no posting is zero
or negative, no bounded source ends below its floor, allotments split exactly."""

from __future__ import annotations

from fractions import Fraction

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ledger.numscript import MissingFundsError

from .helpers import run_script

settings.register_profile(
    "numscript",
    database=None,
    deadline=None,
    max_examples=200,
    suppress_health_check=[HealthCheck.too_slow],
)
PROPERTY = settings.get_profile("numscript")

ACCOUNTS = ["s0", "s1", "s2", "s3"]

source_item = st.tuples(
    st.sampled_from(ACCOUNTS),
    st.sampled_from(["plain", "bounded", "unbounded"]),
    st.integers(min_value=-20, max_value=60),  # overdraft bound (negative bounds act as 0)
    st.one_of(st.none(), st.integers(min_value=-20, max_value=150)),  # optional max cap
)


def _source_text(items: list[tuple[str, str, int, int | None]]) -> str:
    parts = []
    for account, kind, bound, cap in items:
        text = f"@{account}"
        if kind == "bounded":
            text += f" allowing overdraft up to [COIN {bound}]"
        elif kind == "unbounded":
            text += " allowing unbounded overdraft"
        if cap is not None:
            text = f"max [COIN {cap}] from {text}"
        parts.append(text)
    return "{ " + "  ".join(parts) + " }"


@st.composite
def destinations(draw: st.DrawFn) -> tuple[str, list[str]]:
    """An allotment (percentages, maybe with remaining) or an in-order capped destination."""
    names = [f"d{i}" for i in range(draw(st.integers(min_value=1, max_value=4)))]
    if draw(st.booleans()):
        caps = [draw(st.integers(min_value=-5, max_value=120)) for _ in names[:-1]]
        clauses = " ".join(f"max [COIN {c}] to @{n}" for c, n in zip(caps, names, strict=False))
        return f"{{ {clauses} remaining to @{names[-1]} }}", names
    cuts = sorted(
        draw(st.lists(st.integers(0, 100), min_size=len(names) - 1, max_size=len(names) - 1))
    )
    bounds = [0, *cuts, 100]
    shares = [bounds[i + 1] - bounds[i] for i in range(len(names))]
    if draw(st.booleans()):
        items = [f"{s}% to @{n}" for s, n in zip(shares[:-1], names, strict=False)]
        items.append(f"remaining to @{names[-1]}")
    else:
        items = [f"{s}% to @{n}" for s, n in zip(shares, names, strict=True)]
    return "{ " + " ".join(items) + " }", names


@PROPERTY
@given(
    items=st.lists(source_item, min_size=1, max_size=4),
    balances=st.fixed_dictionaries({a: st.integers(-50, 200) for a in ACCOUNTS}),
    amount=st.integers(min_value=0, max_value=400),
    destination=destinations(),
)
def test_sends_conserve_amounts_and_respect_floors(
    items: list[tuple[str, str, int, int | None]],
    balances: dict[str, int],
    amount: int,
    destination: tuple[str, list[str]],
) -> None:
    # given
    dest_text, dest_names = destination
    script = (
        f"send [COIN {amount}] (\n  source = {_source_text(items)}\n  destination = {dest_text}\n)"
    )
    # when
    try:
        result = run_script(script, balances={a: {"COIN": n} for a, n in balances.items()})
    except MissingFundsError as exc:
        # then: a shortfall is only reported when the sources really fell short
        assert exc.needed == amount
        assert 0 <= exc.available < amount
        return
    # then
    assert all(p.amount > 0 for p in result.postings)
    assert sum(p.amount for p in result.postings) == amount
    assert {p.source for p in result.postings} <= {i[0] for i in items}
    assert {p.destination for p in result.postings} <= set(dest_names)
    sent: dict[str, int] = {}
    for p in result.postings:
        sent[p.source] = sent.get(p.source, 0) + p.amount
    for account, total in sent.items():
        clauses = [i for i in items if i[0] == account]
        if any(kind == "unbounded" for _, kind, _, _ in clauses):
            continue
        allowed = max(max(b, 0) if kind == "bounded" else 0 for _, kind, b, _ in clauses)
        floor = min(balances[account], -allowed)
        assert balances[account] - total >= floor, (account, balances[account], total, allowed)


@PROPERTY
@given(
    amount=st.integers(min_value=0, max_value=10**30),
    weights=st.lists(st.integers(min_value=0, max_value=1000), min_size=1, max_size=6).filter(any),
)
def test_allotment_parts_sum_exactly_and_round_by_at_most_one(
    amount: int, weights: list[int]
) -> None:
    # given: portions a/b that sum to exactly 1
    total = sum(weights)
    portions = [Fraction(w, total) for w in weights]
    items = " ".join(f"{p.numerator}/{p.denominator} to @d{i}" for i, p in enumerate(portions))
    # when
    result = run_script(f"send [COIN {amount}] ( source = @world destination = {{ {items} }} )")
    # then
    got = {p.destination: p.amount for p in result.postings}
    assert sum(got.values()) == amount
    for i, portion in enumerate(portions):
        floor = amount * portion.numerator // portion.denominator
        assert got.get(f"d{i}", 0) in (floor, floor + 1)
    assert all(p.amount > 0 for p in result.postings)


@PROPERTY
@given(
    rows=st.lists(
        st.tuples(st.integers(-100, 300), st.one_of(st.none(), st.integers(-10, 50))),
        min_size=1,
        max_size=4,
    )
)
def test_send_all_takes_exactly_what_each_bounded_source_can_give(
    rows: list[tuple[int, int | None]],
) -> None:
    # given: distinct accounts, each plain or with a bounded overdraft
    sources = []
    balances = {}
    expected = 0
    for i, (balance, bound) in enumerate(rows):
        balances[f"a{i}"] = {"COIN": balance}
        if bound is None:
            sources.append(f"@a{i}")
            expected += max(0, balance)
        else:
            sources.append(f"@a{i} allowing overdraft up to [COIN {bound}]")
            expected += max(0, balance + max(bound, 0))
    script = f"send [COIN *] ( source = {{ {' '.join(sources)} }} destination = @dest )"
    # when
    result = run_script(script, balances=balances)
    # then
    assert sum(p.amount for p in result.postings) == expected
    assert all(p.amount > 0 and p.destination == "dest" for p in result.postings)
