"""Grammar-based fuzzing of the parser, checker and interpreter (Hypothesis, bounded).

Random scripts from the Numscript grammar (every construct, experimental ones included,
nested a few levels, with random literals, variables and balances), then mutated into
ill-formed ones (tokens dropped, repeated, swapped or inserted) and random text. Whatever the
input:

* parse, check and run raise nothing but the package's own ``NumscriptError`` (never a
  ``RecursionError``, ``ValueError``, ``KeyError``, ...), also under tiny limits;
* a successful run's postings are positive, name valid accounts and assets, and conserve
  money: per (asset, colour) the balances' total is unchanged, and no plain source (an
  account never given an overdraft, never ``@world``, never a scaling swap) that started at
  or above zero ends below zero;
* the same script on the same inputs gives the same result.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import replace

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ledger import numscript as ns
from ledger.numscript import flags as ff
from ledger.numscript.values import is_valid_account, is_valid_asset

FUZZ = settings(
    database=None,
    deadline=None,
    max_examples=200,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)

PLAIN = ["a0", "a1", "a2", "u:1"]  # plain sources: may never end below zero
OVERDRAFT = ["o0", "o1"]  # given overdraft clauses
SWAPS = ["sw"]
DESTINATIONS = ["d0", "d1", "a0"]
ASSETS = ["COIN", "USD/2", "EUR/2", "EUR", "EUR/3"]
COLORS = ["", "RED"]
HEADER = '#![feature("' + '", "'.join(sorted(ff.ALL_FLAGS)) + '")]\n'
VARS = (
    "vars {\n  monetary $m\n  number $n\n  portion $p\n  account $acc\n  asset $ass\n"
    "  string $s\n}\n"
)


def _weighted(times: int, common: st.SearchStrategy, *rare: st.SearchStrategy) -> st.SearchStrategy:
    """``common`` ``times`` times as often as each of ``rare``."""
    return st.sampled_from([common] * times + list(rare)).flatmap(lambda strategy: strategy)


small = _weighted(
    6, st.integers(min_value=1, max_value=150), st.integers(min_value=-5, max_value=0)
)
huge = st.sampled_from([0, 2**63 - 1, 2**64, 2**256 - 1, 2**256])
amount = _weighted(12, small, huge)  # mostly amounts that can move, sometimes extreme
asset = st.sampled_from(ASSETS)


def _asset(statement_asset: str) -> st.SearchStrategy[str]:
    """The statement's asset, sometimes another one (a mismatch) or ``$ass``."""
    return _weighted(8, st.just(statement_asset), asset, st.just("$ass"))


def _number(depth: int) -> st.SearchStrategy[str]:
    leaf = _weighted(4, amount.map(lambda n: str(n) if n >= 0 else f"-{-n}"), st.just("$n"))
    if depth <= 0:
        return leaf
    sub = _number(depth - 1)
    return _weighted(
        4,
        leaf,
        st.tuples(sub, st.sampled_from(["+", "+", "-"]), sub).map(" ".join),
        sub.map(lambda e: f"({e})"),
        _monetary(depth - 1, "COIN").map(lambda m: f"get_amount({m})"),
    )


def _monetary(depth: int, of: str) -> st.SearchStrategy[str]:
    literal = st.tuples(_asset(of), amount).map(lambda t: f"[{t[0]} {t[1]}]")
    leaf = _weighted(6, literal, st.just("$m"), st.just("[$ass 10]"))
    if depth <= 0:
        return leaf
    sub = _monetary(depth - 1, of)
    return _weighted(
        6,
        leaf,
        st.tuples(_asset(of), _number(depth - 1)).map(lambda t: f"[{t[0]} {t[1]}]"),
        st.tuples(sub, st.sampled_from(["+", "+", "-"]), sub).map(" ".join),
        sub.map(lambda e: f"-{e}"),
        st.tuples(st.sampled_from(PLAIN), _asset(of)).map(lambda t: f"balance(@{t[0]}, {t[1]})"),
        st.tuples(st.sampled_from(OVERDRAFT), _asset(of)).map(
            lambda t: f"overdraft(@{t[0]}, {t[1]})"
        ),
    )


portion = st.one_of(
    st.sampled_from(["1/2", "1/3", "10%", "12.5%", "0%", "100%", "$p", "$n/3", "2/0", "3/2"]),
    st.tuples(st.integers(0, 5), st.integers(1, 5)).map(lambda t: f"{t[0]}/{t[1]}"),
)
plain_account = st.sampled_from([*(f"@{a}" for a in PLAIN), "@u:$s", "$acc"])
color = st.sampled_from(['"RED"', '""', '"RED"', '""', '"bad"', "$s"])


def _source(depth: int, of: str) -> st.SearchStrategy[str]:
    leaf = _weighted(
        3,
        plain_account,
        st.tuples(plain_account, color).map(lambda t: f"{t[0]} \\ {t[1]}"),
        st.just("@world"),
        st.tuples(st.sampled_from(OVERDRAFT), _monetary(0, of)).map(
            lambda t: f"@{t[0]} allowing overdraft up to {t[1]}"
        ),
        st.sampled_from(OVERDRAFT).map(lambda a: f"@{a} allowing unbounded overdraft"),
        st.sampled_from(["@a0", "@a1"]).map(lambda a: f"{a} with scaling through @sw"),
    )
    if depth <= 0:
        return leaf
    sub = _source(depth - 1, of)
    return _weighted(
        3,
        leaf,
        st.lists(sub, max_size=4).map(lambda items: "{ " + " ".join(items) + " }"),
        st.lists(sub, min_size=1, max_size=4).map(
            lambda items: "oneof { " + " ".join(items) + " }"
        ),
        st.tuples(_monetary(0, of), sub).map(lambda t: f"max {t[0]} from {t[1]}"),
        st.tuples(
            st.lists(st.tuples(portion, sub), min_size=1, max_size=3),
            _weighted(4, st.just(True), st.just(False)),
            sub,
        ).map(
            lambda t: (
                "{ "
                + " ".join(f"{p} from {s}" for p, s in t[0])
                + (f" remaining from {t[2]}" if t[1] else "")
                + " }"
            )
        ),
    )


def _kept_or_to(depth: int, of: str) -> st.SearchStrategy[str]:
    return _weighted(3, _destination(depth, of).map(lambda d: f"to {d}"), st.just("kept"))


def _destination(depth: int, of: str) -> st.SearchStrategy[str]:
    leaf = st.sampled_from([*(f"@{a}" for a in DESTINATIONS), "$acc", "@u:$n"])
    if depth <= 0:
        return leaf
    sub = _kept_or_to(depth - 1, of)
    capped = st.lists(st.tuples(_monetary(0, of), sub), max_size=3).map(
        lambda items: " ".join(f"max {m} {k}" for m, k in items)
    )
    return _weighted(
        3,
        leaf,
        st.tuples(
            st.lists(st.tuples(portion, sub), min_size=1, max_size=3),
            _weighted(4, st.just(True), st.just(False)),
            sub,
        ).map(
            lambda t: (
                "{ "
                + " ".join(f"{p} {k}" for p, k in t[0])
                + (f" remaining {t[2]}" if t[1] else "")
                + " }"
            )
        ),
        st.tuples(st.sampled_from(["{", "oneof {"]), capped, sub).map(
            lambda t: f"{t[0]} {t[1]} remaining {t[2]} }}"
        ),
    )


@st.composite
def send_statement(draw: st.DrawFn) -> str:
    of = draw(asset)
    sent = draw(_weighted(3, _monetary(2, of), _asset(of).map(lambda a: f"[{a} *]")))
    source = draw(_source(3, of))
    destination = draw(_destination(3, of))
    return f"send {sent} (\n  source = {source}\n  destination = {destination}\n)"


anything = st.one_of(_number(1), _monetary(1, "COIN"), portion, plain_account, st.just('"text"'))
other_statement = st.one_of(
    send_statement(),
    st.tuples(_monetary(1, "COIN"), plain_account).map(lambda t: f"save {t[0]} from {t[1]}"),
    plain_account.map(lambda a: f"save [EUR/2 *] from {a}"),
    anything.map(lambda v: f'set_tx_meta("k", {v})'),
    st.tuples(plain_account, anything).map(lambda t: f'set_account_meta({t[0]}, "k", {t[1]})'),
)
# a send first (the statement that moves money), then up to 3 more of any kind
scripts = st.tuples(
    _weighted(7, st.just(True), st.just(False)),
    send_statement(),
    st.lists(other_statement, max_size=3),
).map(lambda t: (HEADER if t[0] else "") + VARS + "\n".join([t[1], *t[2]]))
valid_inputs = st.fixed_dictionaries(
    {
        "m": st.tuples(asset, small).map(lambda t: f"{t[0]} {t[1]}"),
        "n": small.map(str),
        "p": st.sampled_from(["1/2", "15%", "1/3", "0%", "100%"]),
        "acc": st.sampled_from([*PLAIN, "d1"]),
        "ass": asset,
        "s": st.sampled_from(["1", "RED", ""]),
    }
)
invalid_inputs = st.fixed_dictionaries(
    {
        "m": st.sampled_from(["junk", f"COIN {'9' * 5000}", "COIN 1", "usd 1"]),
        "n": st.sampled_from(["1_000", "9" * 5000, "-0", "x"]),
        "p": st.sampled_from(["150%", "x", "0/0", "1 / 3"]),
        "acc": st.sampled_from(["bad name", "a0"]),
        "ass": st.sampled_from(["bad", "COIN"]),
        "s": st.sampled_from(["x y", "1"]),
    }
)
inputs = _weighted(6, valid_inputs, invalid_inputs)  # mostly valid, so runs get far
balances = st.dictionaries(
    st.tuples(
        st.sampled_from(PLAIN + OVERDRAFT + SWAPS + DESTINATIONS), asset, st.sampled_from(COLORS)
    ),
    st.one_of(st.integers(min_value=1, max_value=300), st.integers(min_value=-50, max_value=0)),
    min_size=2,
    max_size=12,
)


def _store(rows: dict[tuple[str, str, str], int]) -> ns.StaticStore:
    table: dict[str, dict[tuple[str, str], int]] = {}
    for (account, asset_name, colour), value in rows.items():
        table.setdefault(account, {})[(asset_name, colour)] = value
    return ns.StaticStore(table, {"a0": {"k": "1"}})


def _run(source: str, variables: dict[str, str], rows: dict, limits: ns.Limits | None = None):
    """Parse, check and run; only NumscriptError may escape (the test fails otherwise)."""
    ns.check(source)
    program = ns.parse(source, limits)
    return ns.run(program, vars=variables, store=_store(rows), limits=limits)


def _assert_conserves(source: str, result: ns.ExecutionResult, rows: dict) -> None:
    totals: Counter[tuple[str, str]] = Counter()
    end: Counter[tuple[str, str, str]] = Counter()
    for (account, asset_name, colour), value in rows.items():
        end[(account, asset_name, colour)] += value
        totals[(asset_name, colour)] += value
    for posting in result.postings:
        assert posting.amount > 0, (source, posting)
        assert is_valid_asset(posting.asset), (source, posting)
        assert is_valid_account(posting.source) and is_valid_account(posting.destination)
        end[(posting.source, posting.asset, posting.color)] -= posting.amount
        end[(posting.destination, posting.asset, posting.color)] += posting.amount
    after: Counter[tuple[str, str]] = Counter()
    for (_, asset_name, colour), value in end.items():
        after[(asset_name, colour)] += value
    for key in set(totals) | set(after):
        assert after[key] == totals[key], (source, key)
    for (account, asset_name, colour), value in end.items():
        started = rows.get((account, asset_name, colour), 0)
        if account not in OVERDRAFT + SWAPS + ["world"] and started >= 0:
            # an account with no overdraft clause is only ever drained down to zero
            assert value >= 0, (source, account, asset_name, colour, value)


@FUZZ
@given(source=scripts, variables=inputs, rows=balances)
def test_well_formed_scripts_fail_cleanly_or_conserve_money(source, variables, rows) -> None:
    try:
        result = _run(source, variables, rows)
    except ns.NumscriptError:
        return
    _assert_conserves(source, result, rows)
    assert _run(source, variables, rows) == result  # deterministic


TOKENS = [
    "send",
    "save",
    "from",
    "source",
    "destination",
    "=",
    "(",
    ")",
    "{",
    "}",
    "[",
    "]",
    "*",
    "max",
    "oneof",
    "remaining",
    "kept",
    "to",
    "allowing",
    "overdraft",
    "unbounded",
    "up",
    "with",
    "scaling",
    "through",
    "vars",
    "-",
    "+",
    "/",
    "\\",
    ",",
    "@world",
    "@a0",
    "$m",
    "$n",
    "COIN",
    "USD/2",
    "1",
    "9" * 90,
    "50%",
    '"RED"',
    "balance",
    "meta",
    "#!",
    "/*",
]


@st.composite
def mutated(draw: st.DrawFn) -> str:
    words = draw(scripts).replace("(", " ( ").replace(")", " ) ").split()
    for _ in range(draw(st.integers(1, 4))):
        index = draw(st.integers(0, len(words)))
        action = draw(st.sampled_from(["drop", "repeat", "insert", "swap"]))
        if action == "insert" or not words:
            words.insert(index, draw(st.sampled_from(TOKENS)))
        elif action == "drop":
            del words[min(index, len(words) - 1)]
        elif action == "repeat":
            words.insert(index, words[min(index, len(words) - 1)] * draw(st.integers(1, 3)))
        else:
            other = draw(st.integers(0, len(words) - 1))
            index = min(index, len(words) - 1)
            words[index], words[other] = words[other], words[index]
    return " ".join(words)


garbage = st.text(
    alphabet='sendvarsmaxfrom{}[]()@$*-+/\\%",.:=#!_ \n0123456789ABCUSD', max_size=200
)


@FUZZ
@given(source=st.one_of(mutated(), garbage), variables=inputs, rows=balances)
def test_ill_formed_scripts_only_raise_numscript_errors(source, variables, rows) -> None:
    try:
        result = _run(source, variables, rows)
    except ns.NumscriptError as exc:
        assert exc.message
        return
    _assert_conserves(source, result, rows)


@settings(FUZZ, max_examples=100)
@given(
    source=scripts,
    variables=inputs,
    rows=balances,
    sizes=st.tuples(st.integers(1, 8), st.integers(1, 6), st.integers(1, 200)),
)
def test_tiny_limits_only_raise_numscript_errors(source, variables, rows, sizes) -> None:
    depth, width, steps = sizes
    limits = replace(
        ns.Limits(),
        max_depth=depth,
        max_sources=width,
        max_destinations=width,
        max_branches=width,
        max_statements=width,
        max_steps=steps,
    )
    try:
        limited = _run(source, variables, rows, limits)
    except ns.LimitExceeded:
        return
    except ns.NumscriptError:
        return
    # within the limits, the result is the one the defaults give
    assert _run(source, variables, rows) == limited
