"""A speculative run (a store answering 0 for every balance, see ledger.numscript.store) is
sound: whenever every real balance is at least the minimum the run reported, the ordinary run
against the real balances produces exactly the speculative run's postings (Hypothesis, over
scripts of several sends through nested sources and destinations, intra-script credits and
bounded overdrafts). A run that needs an exact balance says so (Unspeculable)."""

from __future__ import annotations

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from ledger.numscript import NumscriptError, StaticStore, Unspeculable, parse, run

from .test_properties import PROPERTY

ACCOUNTS = ["s0", "s1", "s2", "d0"]
FLAGS = frozenset({"experimental-oneof"})


class Speculating:
    """The interpreter's speculative store, in memory (the ledger's adds address checks)."""

    speculative = True

    def __init__(self) -> None:
        self.required: dict[tuple[str, str, str], int] = {}

    def get_balances(self, query):
        return {account: {} for account in query}

    def get_account_metadata(self, accounts):
        raise Unspeculable("metadata")

    def require(self, key, minimum):
        if key not in self.required or minimum > self.required[key]:
            self.required[key] = minimum


def _account(draw: st.DrawFn) -> str:
    account = draw(st.sampled_from(ACCOUNTS))
    kind = draw(st.sampled_from(["plain", "plain", "bounded", "unbounded"]))
    if kind == "bounded":
        return f"@{account} allowing overdraft up to [COIN {draw(st.integers(0, 40))}]"
    if kind == "unbounded":
        return f"@{account} allowing unbounded overdraft"
    return f"@{account}"


@st.composite
def sources(draw: st.DrawFn, depth: int = 0) -> str:
    kind = draw(st.sampled_from(["account", "account", "inorder", "oneof", "capped", "allot"]))
    if depth >= 2 or kind == "account":
        return _account(draw)
    if kind == "capped":
        return f"max [COIN {draw(st.integers(0, 120))}] from {draw(sources(depth + 1))}"
    if kind == "allot":
        first = draw(sources(depth + 1))
        rest = draw(sources(depth + 1))
        return f"{{ {draw(st.integers(0, 100))}% from {first} remaining from {rest} }}"
    items = draw(st.lists(sources(depth + 1), min_size=1, max_size=3))
    if kind == "oneof":
        return "oneof { " + " ".join(items) + " }"
    return "{ " + " ".join(items) + " }"


@st.composite
def destinations(draw: st.DrawFn) -> str:
    kind = draw(st.sampled_from(["account", "inorder", "allot"]))
    target = draw(st.sampled_from(ACCOUNTS))
    other = draw(st.sampled_from(ACCOUNTS))
    if kind == "inorder":
        cap = draw(st.integers(0, 80))
        kept = draw(st.booleans())
        return f"{{ max [COIN {cap}] {'kept' if kept else f'to @{target}'} remaining to @{other} }}"
    if kind == "allot":
        return f"{{ {draw(st.integers(0, 100))}% to @{target} remaining to @{other} }}"
    return f"@{target}"


@st.composite
def scripts(draw: st.DrawFn) -> str:
    sends = []
    for _ in range(draw(st.integers(1, 3))):
        amount = draw(st.integers(0, 150))
        sends.append(
            f"send [COIN {amount}] (\n  source = {draw(sources())}\n"
            f"  destination = {draw(destinations())}\n)"
        )
    return "\n".join(sends)


def _ordinary(script: str, balances: dict[str, int]):
    try:
        store = StaticStore({a: {"COIN": b} for a, b in balances.items()})
        return run(parse(script), store=store, feature_flags=FLAGS).postings
    except NumscriptError as exc:
        return type(exc).__name__


@PROPERTY
@given(
    script=scripts(),
    balances=st.fixed_dictionaries({a: st.integers(-30, 200) for a in ACCOUNTS}),
)
@example(  # a credit earlier in the script lowers the minimum below the amount
    script="send [COIN 50] ( source = @world destination = @s0 )\n"
    "send [COIN 80] ( source = @s0 destination = @d0 )",
    balances={"s0": 30, "s1": 0, "s2": 0, "d0": 0},
)
@example(  # two sends from one account: the minimum is their sum
    script="send [COIN 50] ( source = @s0 destination = @d0 )\n"
    "send [COIN 60] ( source = @s0 destination = @d0 )",
    balances={"s0": 109, "s1": 0, "s2": 0, "d0": 0},
)
def test_a_speculative_run_whose_minimums_hold_posts_what_the_real_balances_post(
    script: str, balances: dict[str, int]
) -> None:
    store = Speculating()
    try:
        speculated = run(parse(script), store=store, feature_flags=FLAGS).postings
    except (NumscriptError, Unspeculable):
        return  # the caller runs the ordinary way
    holds = all(
        balances.get(account, 0) >= minimum
        for (account, _asset, _color), minimum in store.required.items()
    )
    if holds:
        assert _ordinary(script, balances) == speculated, (script, balances, store.required)


@PROPERTY
@given(script=scripts())
def test_when_the_real_balances_are_large_the_minimums_hold_and_the_runs_agree(
    script: str,
) -> None:
    # rich accounts: every take is in full, so the speculation must not be refused needlessly
    store = Speculating()
    try:
        speculated = run(parse(script), store=store, feature_flags=FLAGS).postings
    except (NumscriptError, Unspeculable):
        return
    rich = {a: 10_000 for a in ACCOUNTS}
    assert all(rich[a] >= m for (a, _asset, _color), m in store.required.items())
    assert _ordinary(script, rich) == speculated


@pytest.mark.parametrize(
    "script",
    [
        "send [COIN *] ( source = @s0 destination = @d0 )",
        "vars { monetary $b = balance(@s0, COIN) }\nsend $b ( source = @world destination = @d0 )",
        "save [COIN 10] from @s0\nsend [COIN 5] ( source = @s0 destination = @d0 )",
        'vars { portion $c = meta(@s0, "c") }\nsend [COIN 5] ( source = @world destination = @d0 )',
    ],
)
def test_a_run_that_needs_an_exact_balance_or_metadata_is_unspeculable(script: str) -> None:
    with pytest.raises(Unspeculable):
        run(parse(script), store=Speculating())


def test_unbounded_and_world_sources_require_nothing() -> None:
    store = Speculating()
    result = run(
        parse(
            "send [COIN 70] ( source = @s0 allowing unbounded overdraft destination = @d0 )\n"
            "send [COIN 30] ( source = @world destination = @d0 )"
        ),
        store=store,
    )
    assert [p.amount for p in result.postings] == [70, 30]
    assert store.required == {}


class Draining(Speculating):
    """Speculating, and taking a final send-all as a drain, computed here as the ledger's write
    computes it (ledger_post_script): total = balance + held, floor of each portion, the
    leftover units one each to the first parts; None when the write would refuse it (a total
    or a part that is not positive)."""

    def __init__(self) -> None:
        super().__init__()
        self.drained: tuple[tuple[str, str, str], int, list] | None = None

    def drain(self, key, held, parts) -> None:
        self.drained = (key, held, parts)

    def postings(self, balances: dict[str, int]):
        assert self.drained is not None
        (account, asset, _color), held, parts = self.drained
        total = balances.get(account, 0) + held
        if total <= 0:
            return None
        amounts = [total * portion.numerator // portion.denominator for portion, _to in parts]
        for i in range(total - sum(amounts)):
            amounts[i] += 1
        if 0 in amounts:
            return None
        return [
            (account, to, asset, amount)
            for (_portion, to), amount in zip(parts, amounts, strict=True)
        ]


@st.composite
def draining_scripts(draw: st.DrawFn) -> str:
    """Sends of fixed amounts (in and out of s0 too), then all of s0 to an allotment."""
    sends = []
    for _ in range(draw(st.integers(0, 2))):
        amount = draw(st.integers(0, 150))
        sends.append(
            f"send [COIN {amount}] (\n  source = {draw(sources())}\n"
            f"  destination = {draw(destinations())}\n)"
        )
    parts = []
    for _ in range(draw(st.integers(0, 2))):
        parts.append(f"{draw(st.integers(0, 60))}% to @{draw(st.sampled_from(['d0', 's1']))}")
    parts.append(f"remaining to @{draw(st.sampled_from(['d0', 's2']))}")
    sends.append("send [COIN *] ( source = @s0 destination = { " + " ".join(parts) + " } )")
    return "\n".join(sends)


@PROPERTY
@given(
    script=draining_scripts(),
    balances=st.fixed_dictionaries({a: st.integers(-30, 400) for a in ACCOUNTS}),
)
@example(  # s0 credited earlier in the script: the total includes it
    script="send [COIN 40] ( source = @world destination = @s0 )\n"
    "send [COIN *] ( source = @s0 destination = { 50% to @d0 remaining to @s1 } )",
    balances={"s0": 11, "s1": 0, "s2": 0, "d0": 0},
)
def test_a_drain_computed_by_the_write_posts_what_the_ordinary_run_posts(
    script: str, balances: dict[str, int]
) -> None:
    store = Draining()
    try:
        speculated = run(parse(script), store=store, feature_flags=FLAGS).postings
    except (NumscriptError, Unspeculable):
        return  # the caller runs the ordinary way
    assert store.drained is not None, script
    holds = all(
        balances.get(account, 0) >= minimum
        for (account, _asset, _color), minimum in store.required.items()
    )
    drained = store.postings(balances)
    if holds and drained is not None:
        expected = _ordinary(script, balances)
        got = [(x.source, x.destination, x.asset, x.amount) for x in speculated] + drained
        assert not isinstance(expected, str), (script, balances, expected)
        assert [(x.source, x.destination, x.asset, x.amount) for x in expected] == got, (
            script,
            balances,
        )
