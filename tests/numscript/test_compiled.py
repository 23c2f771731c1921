"""A template compiled for the speculative run (ledger.numscript.compiled) gives the
interpreter's answer: whenever the generated function returns a result, the interpreter, run
on the same inputs against a store of its own, returns the same postings and leaves the same
effects on its store (metadata reads in order, `require` minimums, the drain). Hypothesis
over scripts of the subset and their inputs (malformed ones included), the product's
templates, and every case of the conformance suite whose script is in the subset."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ledger.numscript import limits as lim
from ledger.numscript import parse, run
from ledger.numscript.bench import SPLIT_SCRIPT, SPLIT_VARS
from ledger.numscript.compiled import MAX_SOURCE_CHARS, compiled_for, run_speculative
from ledger.numscript.errors import StepBudgetExceeded
from ledger.numscript.specs import find_spec_files

from .helpers import REPO_ROOT, conformance_dir

FLOWS = REPO_ROOT / "marketplace" / "flows"


class Refused(Exception):
    """The recording store's refusal of an address (as the ledger's InvalidAddress)."""


class Recording:
    """A speculative store with drains, in memory, that records what a run asks of it. It
    refuses addresses containing 'bad' when asked for their balance rows or a drain."""

    speculative = True

    def __init__(self, metadata: dict[str, dict[str, str]] | None = None) -> None:
        self.metadata = metadata or {}
        self.metadata_reads: list[str] = []
        self.required: dict[tuple[str, str, str], int] = {}
        self.drained: tuple | None = None

    def _check(self, account: str) -> None:
        if "bad" in account:
            raise Refused(account)

    def get_balances(self, query):
        for account in query:
            self._check(account)
        return {account: {} for account in query}

    def get_account_metadata(self, accounts):
        self.metadata_reads.extend(accounts)
        return {a: dict(self.metadata[a]) for a in accounts if a in self.metadata}

    def require(self, key, minimum):
        if key not in self.required or minimum > self.required[key]:
            self.required[key] = minimum

    def drain(self, key, held, parts):
        self._check(key[0])
        for _portion, address in parts:
            self._check(address)
        self.drained = (key, held, tuple(parts))

    def effects(self) -> tuple:
        return (self.metadata_reads, self.required, self.drained)


def _compare(source: str, vars: dict[str, str], metadata=None, flags=frozenset()) -> bool:
    """Run both ways; True when the generated function answered (and agreed)."""
    program = parse(source)
    entry = compiled_for(program)
    assert entry is not None, "not in the subset"
    fn, steps = entry
    mine, theirs = Recording(metadata), Recording(metadata)
    try:
        result = fn(vars, mine)
    except Exception:  # the interpreter answers: nothing to compare
        return False
    if result is None:
        return False
    # the interpreter agrees, within the step budget the generated function claims it needs
    budget = dataclasses.replace(lim.current(), max_steps=steps)
    expected = run(program, vars=vars, store=theirs, feature_flags=flags, limits=budget)
    assert result == expected
    assert mine.effects() == theirs.effects()
    return True


# --- scripts of the subset --------------------------------------------------------------------

HEADER = """vars {
  account $a
  account $b
  account $c
  monetary $m1
  monetary $m2
  monetary $cap
  portion $p
  portion $q = meta($c, "share")
}
"""
ACCOUNTS = ["s0", "s1", "d0", "s0", "s1", "d0", "world", "x:y", "bad:one"]


@st.composite
def _account(draw: st.DrawFn) -> str:
    return draw(st.sampled_from(["$a", "$b", "$c", "@s0", "@d0", "@world", "@platform:fees"]))


@st.composite
def _amount(draw: st.DrawFn) -> str:
    return draw(
        st.sampled_from(
            ["$m1", "$m2", "$m1", "$m2", "[COIN 0]", "[COIN 7]", "[COIN 250]", "[EUR 5]"]
        )
    )


@st.composite
def _source(draw: st.DrawFn) -> str:
    account = draw(_account())
    kind = draw(st.sampled_from(["plain", "plain", "unbounded", "bounded", "bounded-var"]))
    if kind == "unbounded":
        return f"{account} allowing unbounded overdraft"
    if kind == "bounded":
        return f"{account} allowing overdraft up to [COIN {draw(st.integers(0, 40))}]"
    if kind == "bounded-var":
        return f"{account} allowing overdraft up to $cap"
    return account


@st.composite
def _portion(draw: st.DrawFn) -> str:
    return draw(st.sampled_from(["$p", "$q", "1/3", "25%", "50%", "0%"]))


@st.composite
def _destination(draw: st.DrawFn, depth: int = 0) -> str:
    kind = draw(st.sampled_from(["account", "account", "allot", "inorder"]))
    if depth >= 2 or kind == "account":
        return draw(_account())
    if kind == "allot":
        items = [f"{draw(_portion())} to {draw(_destination(depth + 1))}"]
        if draw(st.booleans()):
            items.append(f"{draw(_portion())} to {draw(_destination(depth + 1))}")
        if draw(st.sampled_from(range(6))) > 0:  # without it, the portions must add up to 1
            items.append(f"remaining to {draw(_destination(depth + 1))}")
        return "{ " + " ".join(items) + " }"
    cap = draw(st.sampled_from(["$cap", "$m1", "[COIN 3]", "[COIN 100]", "$cap", "[EUR 1]"]))
    clauses = [f"max {cap} to {draw(_destination(depth + 1))}"]
    if draw(st.booleans()):
        clauses.append(f"max [COIN {draw(st.integers(0, 60))}] to {draw(_destination(depth + 1))}")
    return "{ " + " ".join(clauses) + f" remaining to {draw(_destination(depth + 1))} }}"


@st.composite
def scripts(draw: st.DrawFn) -> str:
    sends = [
        f"send {draw(_amount())} ( source = {draw(_source())} "
        f"destination = {draw(_destination())} )"
        for _ in range(draw(st.integers(1, 3)))
    ]
    if draw(st.booleans()):
        asset = draw(st.sampled_from(["COIN", "COIN", "COIN", "EUR"]))
        account = draw(_account())
        if draw(st.booleans()):
            target = draw(_account())
        else:
            target = (
                f"{{ {draw(_portion())} to {draw(_account())} remaining to {draw(_account())} }}"
            )
        sends.append(f"send [{asset} *] ( source = {account} destination = {target} )")
    return HEADER + "\n".join(sends) + "\n"


def _monetary(draw: st.DrawFn) -> str:
    asset = draw(st.sampled_from(["COIN"] * 15 + ["EUR"]))
    amount = draw(st.one_of(st.integers(0, 500), st.integers(-3, 2**62)))
    return f"{asset} {amount}"


@st.composite
def inputs(draw: st.DrawFn) -> tuple[dict[str, str], dict[str, dict[str, str]]]:
    vars = {name: draw(st.sampled_from(ACCOUNTS)) for name in ("a", "b", "c")}
    for name in ("m1", "m2", "cap"):
        vars[name] = _monetary(draw)
    vars["p"] = draw(
        st.sampled_from(["10%", "1/3", "0%", "100%", "3/4", "10%", "1/3", "2/9"] * 3 + ["150%"])
    )
    for name in list(vars):
        if draw(st.sampled_from(range(60))) == 7:
            del vars[name]  # a missing var
    if draw(st.sampled_from(range(60))) == 7:
        vars["m1"] = "COIN twelve"  # a malformed one
    share = draw(st.sampled_from(["15%", "2/5", "0%", "15%", "2/5", None]))
    metadata = {}
    if share is not None and "c" in vars:
        metadata[vars["c"]] = {"share": share}
    return vars, metadata


@settings(max_examples=600, deadline=None)
@given(source=scripts(), given_inputs=inputs())
def test_a_compiled_template_answers_as_the_interpreter(source, given_inputs):
    vars, metadata = given_inputs
    _compare(source, vars, metadata)


def test_the_generated_function_answers_the_common_case():
    # given: a split with a drain, and an inorder split, in the subset
    vars = {
        "a": "s0",
        "b": "d0",
        "c": "x:y",
        "m1": "COIN 100",
        "m2": "COIN 7",
        "cap": "COIN 30",
        "p": "10%",
    }
    drained = HEADER + (
        "send $m1 ( source = $a destination = { max $cap to $b remaining to "
        "{ $p to @platform:fees remaining to $c } } )\n"
        "send [COIN *] ( source = $a destination = { $q to $b remaining to $c } )\n"
    )
    # when / then: the function answers (no fallback) and agrees with the interpreter
    assert _compare(drained, vars, {"x:y": {"share": "15%"}})


@pytest.mark.parametrize(
    "name",
    ["payment.num", "split.num", "coupon_reserve.num", "topup.num", "capital.num"],
)
@settings(max_examples=60, deadline=None)
@given(data=st.data())
def test_the_products_templates_compile_and_agree(name, data):
    source = (FLOWS / name).read_text()
    program = parse(source)
    assert compiled_for(program) is not None
    vars = {}
    for decl in program.vars:
        if decl.origin is not None:
            continue
        if decl.type_name == "monetary":
            vars[decl.name] = f"USD/2 {data.draw(st.integers(0, 10**9))}"
        elif decl.type_name == "account":
            vars[decl.name] = data.draw(st.sampled_from(["orders:1", "riders:2", "restaurants:3"]))
        elif decl.type_name == "portion":
            vars[decl.name] = data.draw(st.sampled_from(["15%", "0%", "1/3", "100%"]))
        elif decl.type_name == "number":
            vars[decl.name] = str(data.draw(st.integers(0, 10**6)))
        else:
            vars[decl.name] = "x"
    _compare(source, vars)


def test_the_bench_split_script_is_answered_by_the_generated_function():
    metadata = {SPLIT_VARS["restaurant"]: {"commission": "15%"}}
    assert _compare(SPLIT_SCRIPT, dict(SPLIT_VARS), metadata)


def _conformance_cases() -> list:
    params = []
    suite = conformance_dir()
    for spec in find_spec_files([suite]):
        script = Path(str(spec)[: -len(".specs.json")])
        program = parse(script.read_text())
        if compiled_for(program) is None:
            continue
        data = json.loads(spec.read_text())
        for index, case in enumerate(data.get("testCases", [])):
            vars = {**data.get("variables", {}), **case.get("variables", {})}
            flags = frozenset(data.get("featureFlags", []))
            params.append(
                pytest.param(
                    script, vars, case.get("metadata", {}), flags, id=f"{script.name}[{index}]"
                )
            )
    return params


@pytest.mark.parametrize(("script", "vars", "metadata", "flags"), _conformance_cases())
def test_conformance_scripts_in_the_subset_agree(script, vars, metadata, flags):
    _compare(script.read_text(), vars, metadata, flags)


def test_enough_of_the_conformance_suite_is_in_the_subset():
    # the comparison above is not vacuous: a fair share of upstream's scripts compile
    assert len(_conformance_cases()) >= 20


def test_outside_the_subset_the_interpreter_runs():
    # colors, save, oneof and kept are not compiled; run_speculative gives the interpreter's
    for source in (
        'send [COIN 1] ( source = @a \\ "red" destination = @b )',
        "save [COIN 1] from @a\nsend [COIN 1] ( source = @world destination = @b )",
        "send [COIN 1] ( source = { @a @b } destination = @c )",
        "send [COIN 1] ( source = @world destination = { 50% kept remaining to @b } )",
    ):
        assert compiled_for(parse(source)) is None, source
    program = parse("send [COIN 1] ( source = @world destination = { 50% kept remaining to @b } )")
    store = Recording()
    assert run_speculative(program, vars={}, store=store) == run(
        program, vars={}, store=Recording()
    )


def test_a_step_budget_below_what_the_template_may_need_runs_the_interpreter():
    # given: a budget so small that the interpreter stops the run
    program = parse(SPLIT_SCRIPT)
    metadata = {SPLIT_VARS["restaurant"]: {"commission": "15%"}}
    saved = lim.current()
    lim.configure(lim.Limits(max_steps=5))
    try:
        # when / then: the budget's error, as the interpreter gives it
        with pytest.raises(StepBudgetExceeded):
            run_speculative(program, vars=dict(SPLIT_VARS), store=Recording(metadata))
    finally:
        lim.configure(saved)


@pytest.mark.parametrize("shape", ["deep", "wide", "deeper than python nests"])
def test_deep_and_wide_destinations_answer_as_the_interpreter(shape):
    # given: nested allotments as deep as the parser allows, or 150 in-order clauses, or a
    # nesting past what Python's compiler takes (a limit raised for the test)
    saved = lim.current()
    dest = "@d"
    if shape == "wide":
        clauses = " ".join(f"max [COIN 1] to @d{i}" for i in range(150))
        dest = "{ " + clauses + " remaining to @e }"
    elif shape == "deep":
        for _ in range(45):
            dest = "{ 50% to " + dest + " remaining to @e }"
    else:  # each in-order level nests the generated code two levels deeper
        for _ in range(60):
            dest = "{ max [COIN 600] to " + dest + " remaining to @e }"
    source = f"send [COIN 1000] ( source = @s allowing unbounded overdraft destination = {dest} )"
    assert len(source) <= MAX_SOURCE_CHARS
    if shape == "deeper than python nests":
        lim.configure(dataclasses.replace(saved, max_depth=400, max_steps=10**6))
    try:
        program = parse(source)
        # when
        got = run_speculative(program, vars={}, store=Recording())
        # then: the same postings as the interpreter, whichever way they were computed
        assert got == run(program, vars={}, store=Recording())
        assert (compiled_for(program) is None) == (shape == "deeper than python nests")
    finally:
        lim.configure(saved)


def test_a_long_template_runs_the_interpreter_and_the_cache_stays_bounded():
    from ledger.numscript import compiled

    # given: a template of the subset longer than the generated code is kept for
    sends = "\n".join(
        f"send [COIN {i}] ( source = @world destination = @d{i} )" for i in range(1, 120)
    )
    assert len(sends) > compiled.MAX_SOURCE_CHARS
    program = parse(sends)
    # when / then: not compiled, the interpreter's answer
    assert compiled_for(program) is None
    assert run_speculative(program, vars={}, store=Recording()) == run(
        program, vars={}, store=Recording()
    )
    # and many distinct templates never keep more than the cache's size
    for i in range(compiled._CACHE_MAX + 10):
        compiled_for(parse(f"send [COIN {i}] ( source = @world destination = @d )"))
    assert len(compiled._CACHE) <= compiled._CACHE_MAX
