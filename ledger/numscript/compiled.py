"""Templates compiled for the speculative run: the common shapes as straight-line Python.

A speculative run (a store with ``speculative = True``: every balance answers 0, a bounded
source reports the minimum stored balance it needs through ``store.require``, a final
``send [A *]`` is handed to ``store.drain``; see ledger.numscript.store) of a template in the
subset below does the same work on every call: parse the vars, look up a metadata value or
two, and move fixed amounts between named accounts. ``run_speculative`` runs such a template
as a function generated once per template text, with no tree walk, and falls back to the
interpreter (``run``) for everything else.

The interpreter stays the reference. The generated function returns a result only on the
interpreter's happy path, and that result is the interpreter's, with the same effects on the
store: the same postings, the same metadata reads in the same order, the same `require`
minimums, the same drain, and the sources' balance rows asked of it (a speculative store
answers 0, and refuses an address as the interpreter's reads would have it refused).
Anything else makes it return None (a var missing or
malformed, a negative amount, a currency that does not match, an allotment that does not
add up, a drain the write cannot take, a step budget smaller than the template could
need) or raise (the store's own refusals). In both cases the interpreter runs again from
the start and gives the answer, error included. ``tests/numscript/test_compiled.py``
compares the two on random inputs.

The subset:

- vars of any type, given by the caller, or `meta($account, "key")` of an account var
  declared before;
- `send` statements only, no feature flags;
- amounts: a monetary var or literal, or `[ASSET *]` in the last statement, from one account
  (no color) to an account or an allotment of accounts (the drain the write computes);
- sources: one account (no color), optionally `allowing unbounded overdraft` or `allowing
  overdraft up to` a monetary var or literal;
- destinations: an account, an allotment (portion vars, literals, `remaining`) or an
  in-order split (`max` a monetary var or literal, then `remaining`) of destinations of
  these kinds (`kept` is not in the subset);
- accounts: account vars and plain literals (no interpolation); portions: portion vars,
  percentages and fractions of two numbers.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Collection, Mapping
from fractions import Fraction
from typing import Any

from . import limits as lim
from .ast import (
    AccountLit,
    AssetLit,
    DestAccount,
    DestAllotment,
    DestInorder,
    FnCall,
    Infix,
    MonetaryLit,
    NumberLit,
    PercentLit,
    Program,
    SendStmt,
    SentAll,
    SrcAccount,
    SrcOverdraft,
    StringLit,
    To,
    VarRef,
)
from .interpreter import ExecutionResult, Posting, _parsed, allot, completed_portions, run
from .span import Span
from .store import Store
from .valuetypes import (
    ALL_TYPES,
    ONE,
    TYPE_ACCOUNT,
    TYPE_MONETARY,
    TYPE_PORTION,
    TYPE_STRING,
    WORLD,
    Monetary,
)

Compiled = Callable[[Mapping[str, Any], Store], ExecutionResult | None]


class _NotInSubset(Exception):
    """The template has a shape the generator does not handle: the interpreter runs it."""


# --- the cache --------------------------------------------------------------------------------

_CACHE: dict[str, tuple[Compiled, int] | None] = {}
# Any ledger API client may post scripts: generated code is kept for at most this many
# templates per process (emptied when full), and only for templates this short (the
# product's are under 1.5 KiB), so what it holds stays small; others run the interpreter.
_CACHE_MAX = 256
MAX_SOURCE_CHARS = 4096
_LOCK = threading.Lock()


def compiled_for(program: Program) -> tuple[Compiled, int] | None:
    """The function generated for this template and the step budget it may need at most, or
    None outside the subset; generated once per template text (bounded, emptied when full)."""
    try:
        return _CACHE[program.source]
    except KeyError:
        pass
    if len(program.source) > MAX_SOURCE_CHARS:
        return None
    try:
        entry: tuple[Compiled, int] | None = _Generator(program).build()
    except _NotInSubset:
        entry = None
    except Exception:
        # Python's own limits on the generated code (nesting past 100 levels), or any shape
        # the generator did not foresee: not compiled, the interpreter runs it
        entry = None
    with _LOCK:
        if len(_CACHE) >= _CACHE_MAX:
            _CACHE.clear()
        _CACHE[program.source] = entry
    return entry


def run_speculative(
    program: Program,
    *,
    vars: Mapping[str, str],
    store: Store,
    feature_flags: Collection[str] = frozenset(),
) -> ExecutionResult:
    """`run(program, vars=vars, store=store, feature_flags=...)` for a speculative store,
    through the generated function where the template is in the subset (module docstring)."""
    entry = compiled_for(program)
    if entry is not None and getattr(store, "speculative", False) is True:
        fn, steps = entry
        if lim.current().max_steps >= steps:
            try:
                result = fn(vars, store)
            except Exception:  # the interpreter gives the answer (and the error)
                result = None
            if result is not None:
                return result
    return run(program, vars=vars, store=store, feature_flags=feature_flags)


# --- the generator ----------------------------------------------------------------------------


class _Generator:
    """Writes one Python function per template. Nothing from the script's text goes into the
    generated code: values, names and spans are passed in as constants (c0, c1, ...); the
    code itself is made of this module's fixed fragments and generated local names."""

    def __init__(self, program: Program) -> None:
        self.program = program
        self.lines: list[str] = []
        self.constants: dict[str, Any] = {}
        self.var_types: dict[str, str] = {}
        self.var_names: dict[str, str] = {}  # script var -> local name
        self.counter = 0
        self.nodes = 0  # an upper bound of the interpreter's steps, per node below

    # helpers

    def const(self, value: Any) -> str:
        name = f"c{len(self.constants)}"
        self.constants[name] = value
        return name

    def local(self, prefix: str) -> str:
        self.counter += 1
        return f"{prefix}{self.counter}"

    def emit(self, depth: int, line: str) -> None:
        self.lines.append("    " * depth + line)

    # the function

    def build(self) -> tuple[Compiled, int]:
        program = self.program
        if program.flags:
            raise _NotInSubset("feature flags")
        statements = program.statements
        if not statements or not all(type(s) is SendStmt for s in statements):
            raise _NotInSubset("statements other than send")
        self.emit(1, "bal = {}")
        self.emit(1, "postings = []")
        self.emit(1, "requires = []")
        self.emit(1, "meta = {}")
        self.emit(1, "reads = {}")
        self.emit(1, "P = postings.append")
        for decl in program.vars:
            self.var_decl(decl)
        drain: str | None = None
        for index, stmt in enumerate(statements):
            assert isinstance(stmt, SendStmt)
            if type(stmt.sent) is SentAll:
                if index != len(statements) - 1:
                    raise _NotInSubset("a send-all before the last statement")
                drain = self.drain(stmt)
            else:
                self.send(stmt)
        # the sources' balance rows, asked as the interpreter asks them (none is read: a
        # speculative store answers 0, but refuses an address the ledger would refuse)
        self.emit(1, "if reads:")
        self.emit(2, "store.get_balances(reads)")
        self.emit(1, "for key, minimum in requires:")
        self.emit(2, "store.require(key, minimum)")
        if drain is not None:
            self.emit(1, f"store.drain(*{drain})")
        self.emit(1, "return ExecutionResult(postings, {}, {})")
        source = "def _compiled(inputs, store):\n" + "\n".join(self.lines) + "\n"
        # the names the fragments use (builtins come with exec's globals)
        namespace: dict[str, Any] = {
            **self.constants,
            "ExecutionResult": ExecutionResult,
            "Posting": Posting,
            "WORLD": WORLD,
            "allot": allot,
            "completed_portions": completed_portions,
            "parsed": _parsed,
        }
        code = compile(source, f"<numscript compiled: {len(program.source)} chars>", "exec")
        exec(code, namespace)  # noqa: S102 -- fixed fragments only (see the class docstring)
        fn: Compiled = namespace["_compiled"]
        # the interpreter counts fewer steps than 8 per node; 64 leaves room for loads
        return fn, 64 + 8 * self.nodes

    # vars

    def var_decl(self, decl: Any) -> None:
        if decl.type_name not in ALL_TYPES:
            raise _NotInSubset("unknown type")
        local = self.local("v")
        self.nodes += 4
        origin = decl.origin
        if origin is None:
            raw = self.local("r")
            self.emit(1, f"{raw} = inputs.get({self.const(decl.name)})")
            self.emit(1, f"if type({raw}) is not str:")
            self.emit(2, "return None")
            self.emit(
                1,
                f"{local} = parsed({self.const(decl.type_name)}, {raw}, "
                f"{self.const(decl.name_span)})",
            )
        elif type(origin) is FnCall and origin.name == "meta":
            args = origin.args
            if (
                len(args) != 2
                or type(args[0]) is not VarRef
                or self.var_types.get(args[0].name) != TYPE_ACCOUNT
                or type(args[1]) is not StringLit
            ):
                raise _NotInSubset("meta() of something else than an account var and a key")
            account = self.var_names[args[0].name]
            data, raw = self.local("m"), self.local("r")
            self.emit(1, f"{data} = meta.get({account})")
            self.emit(1, f"if {data} is None:")
            self.emit(
                2,
                f"{data} = meta[{account}] = "
                f"store.get_account_metadata([{account}]).get({account}) or {{}}",
            )
            self.emit(1, f"{raw} = {data}.get({self.const(str(args[1].value))})")
            self.emit(1, f"if {raw} is None:")
            self.emit(2, "return None")
            self.emit(
                1,
                f"{local} = parsed({self.const(decl.type_name)}, {raw}, {self.const(origin.span)})",
            )
        else:
            raise _NotInSubset("a var computed otherwise")
        self.var_types[decl.name] = decl.type_name
        self.var_names[decl.name] = local

    # expressions (values the subset allows, each of a known type)

    def value(self, expr: Any, type_name: str) -> str:
        """A local or constant holding the expression's value, of `type_name`."""
        self.nodes += 1
        if type(expr) is VarRef:
            if self.var_types.get(expr.name) != type_name:
                raise _NotInSubset("a var of another type")
            return self.var_names[expr.name]
        if type_name == TYPE_ACCOUNT and type(expr) is AccountLit and expr.value is not None:
            return self.const(expr.value)
        if (
            type_name == TYPE_MONETARY
            and type(expr) is MonetaryLit
            and type(expr.asset) is AssetLit
            and type(expr.amount) is NumberLit
        ):
            self.nodes += 2
            return self.const(Monetary(expr.asset.value, expr.amount.value))
        if type_name == TYPE_PORTION and type(expr) is PercentLit:
            return self.const(expr.value)
        if (
            type_name == TYPE_PORTION
            and type(expr) is Infix
            and expr.op == "/"
            and type(expr.left) is NumberLit
            and type(expr.right) is NumberLit
            and expr.right.value != 0
        ):
            self.nodes += 2
            return self.const(Fraction(expr.left.value, expr.right.value))
        if type_name == TYPE_STRING and type(expr) is StringLit:
            return self.const(expr.value)
        raise _NotInSubset("an expression")

    def portions(self, items: Any, span: Span, depth: int = 1) -> str:
        """Completed portions of an allotment (interpreter's _portions): negative -> None."""
        given: list[str] = []
        for item in items:
            self.nodes += 2
            if item.portion is None:
                given.append("None")
                continue
            portion = self.value(item.portion, TYPE_PORTION)
            # a portion is a Fraction (denominator > 0): the sign is the numerator's, without
            # Fraction's comparison protocol
            self.emit(depth, f"if {portion}.numerator < 0:")
            self.emit(depth + 1, "return None")
            given.append(portion)
        name = self.local("q")
        self.emit(depth, f"{name} = completed_portions(({', '.join(given)},), {self.const(span)})")
        return name

    # statements

    def send(self, stmt: SendStmt) -> None:
        self.nodes += 4
        monetary = self.value(stmt.sent, TYPE_MONETARY)
        asset, amount = self.local("a"), self.local("n")
        self.emit(1, f"{asset} = {monetary}.asset")
        self.emit(1, f"{amount} = {monetary}.amount")
        self.emit(1, f"if {amount} < 0:")
        self.emit(2, "return None")
        source = stmt.source
        if not isinstance(source, SrcAccount | SrcOverdraft) or source.color is not None:
            raise _NotInSubset("a source other than one account")
        account = self.value(source.address, TYPE_ACCOUNT)
        key = self.local("k")
        self.emit(1, f"{key} = ({account}, {asset}, '')")
        overdraft: str | None = "0"
        if type(source) is SrcOverdraft:
            if source.bound is None:
                overdraft = None
            else:
                bound = self.value(source.bound, TYPE_MONETARY)
                overdraft = self.local("o")
                self.emit(1, f"if {bound}.asset != {asset}:")
                self.emit(2, "return None")
                self.emit(1, f"{overdraft} = max({bound}.amount, 0)")
        self.emit(1, f"if {account} != WORLD:")
        self.emit(2, f"reads.setdefault({account}, []).append(({asset}, ''))")
        if overdraft is not None:
            # a bounded source takes in full if the stored balance is at least the amount less
            # the overdraft and what the run already moved in or out of it (`held`)
            self.emit(1, f"if {amount} > 0 and {account} != WORLD:")
            self.emit(2, f"requires.append(({key}, {amount} - {overdraft} - bal.get({key}, 0)))")
        self.emit(1, f"if {amount}:")
        self.emit(2, f"bal[{key}] = bal.get({key}, 0) - {amount}")
        sender, plain_asset = self.local("s"), self.local("t")
        self.emit(1, f"{sender} = str({account})")
        self.emit(1, f"{plain_asset} = str({asset})")
        self.destination(stmt.destination, amount, sender, asset, plain_asset, depth=1)

    def destination(
        self, dest: Any, amount: str, sender: str, asset: str, plain_asset: str, depth: int
    ) -> None:
        """Credit `amount` (a local) to `dest` from the run's one sender: one posting per
        non-empty part, in the order written (the interpreter's funds queue holds one entry)."""
        self.nodes += 4
        if type(dest) is DestAccount:
            account = self.value(dest.address, TYPE_ACCOUNT)
            key = self.local("k")
            self.emit(depth, f"if {amount} > 0:")
            self.emit(
                depth + 1, f"P(Posting({sender}, str({account}), {plain_asset}, {amount}, ''))"
            )
            self.emit(depth + 1, f"{key} = ({account}, {asset}, '')")
            self.emit(depth + 1, f"bal[{key}] = bal.get({key}, 0) + {amount}")
            return
        if type(dest) is DestAllotment:
            targets: list[To] = []
            for item in dest.items:
                if not isinstance(item.target, To):
                    raise _NotInSubset("kept")
                targets.append(item.target)
            values = self.portions(dest.items, dest.span, depth)
            parts = self.local("p")
            self.emit(depth, f"{parts} = allot({amount}, {values})")
            for index, target in enumerate(targets):
                part = self.local("n")
                self.emit(depth, f"{part} = {parts}[{index}]")
                self.destination(target.destination, part, sender, asset, plain_asset, depth)
            return
        if type(dest) is DestInorder:
            left = self.local("l")
            self.emit(depth, f"{left} = {amount}")
            inner = depth + 1
            for clause in dest.clauses:
                if type(clause.target) is not To:
                    raise _NotInSubset("kept")
                # a clause's cap is read only while something is left: once nothing is, no
                # later block runs (the interpreter's loop stops there)
                self.emit(depth, f"if {left} != 0:")
                cap = self.value(clause.cap, TYPE_MONETARY)
                share = self.local("n")
                self.emit(inner, f"if {cap}.asset != {asset}:")
                self.emit(inner + 1, "return None")
                self.emit(inner, f"{share} = max(0, min({cap}.amount, {left}))")
                self.emit(inner, f"if {share} != 0:")
                self.destination(
                    clause.target.destination, share, sender, asset, plain_asset, inner + 1
                )
                self.emit(inner + 1, f"{left} -= {share}")
            remaining = dest.remaining
            if type(remaining) is not To:
                raise _NotInSubset("kept")
            self.emit(depth, f"if {left} != 0:")
            self.destination(remaining.destination, left, sender, asset, plain_asset, depth + 1)
            return
        raise _NotInSubset("a destination")

    def drain(self, stmt: SendStmt) -> str:
        """The last `send [A *]` handed to the store (the interpreter's `_deferred_drain`);
        returns the local holding drain()'s arguments, called after the requires."""
        self.nodes += 8
        sent = stmt.sent
        assert isinstance(sent, SentAll)
        if type(sent.asset) is AssetLit:
            asset = self.const(sent.asset.value)
        elif type(sent.asset) is VarRef and self.var_types.get(sent.asset.name) == "asset":
            asset = self.var_names[sent.asset.name]
        else:
            raise _NotInSubset("the drained asset")
        source = stmt.source
        if type(source) is not SrcAccount or source.color is not None:
            raise _NotInSubset("a drain from something else than one account")
        self.emit(1, "if getattr(store, 'drain', None) is None:")  # a store without drains
        self.emit(2, "return None")
        dest = stmt.destination
        if type(dest) is DestAccount:
            values = self.const([ONE])
            targets = [dest.address]
        elif type(dest) is DestAllotment:
            targets = []
            for item in dest.items:
                target = item.target
                if type(target) is not To or type(target.destination) is not DestAccount:
                    raise _NotInSubset("a drain to something else than accounts")
                targets.append(target.destination.address)
            values = self.portions(dest.items, dest.span)
        else:
            raise _NotInSubset("a drain to something else than accounts")
        account = self.value(source.address, TYPE_ACCOUNT)
        addresses = self.local("d")
        self.emit(1, f"{addresses} = [{', '.join(self.value(t, TYPE_ACCOUNT) for t in targets)}]")
        self.emit(1, f"if {account} == WORLD or {account} in {addresses}:")
        self.emit(2, "return None")
        key, args = self.local("k"), self.local("g")
        self.emit(1, f"{key} = ({account}, {asset}, '')")
        self.emit(1, f"{args} = ({key}, bal.get({key}, 0), list(zip({values}, {addresses})))")
        return args


__all__ = ["compiled_for", "run_speculative"]
