"""Static checks of a Numscript program (``numscript check``); nothing here runs the script.

Reports: parse errors and limits, unknown types, duplicate (the first declaration is kept) /
unbound / unused variables, type mismatches, asset mismatches found by inferring assets
across uses (as formancehq/numscript's checker: every expression gets an asset type
variable, unified through variables, monetary literals, caps, sent values and
``balance()``/``overdraft()``/``get_asset()``), variables whose asset is thereby fixed ("bound
asset" warnings), unknown functions and bad arity, ``meta()`` outside a
variable initializer, literal division by zero, allotment problems (sum, several or
misplaced ``remaining``, redundant ``remaining``, variable portions without ``remaining``),
send-all from allotments or unbounded sources, sources that can never be reached (after an
unbounded source, or an account already emptied earlier in the statement, ``\\ ""`` being
no colour), ``@world`` given an overdraft clause,
``@world`` scaled, and experimental features used without their flag (flags come from
``#![feature(...)]``, ``// @feature_flag NAME`` comments and the caller).
"""

from __future__ import annotations

import re
from collections.abc import Collection
from dataclasses import dataclass
from fractions import Fraction

from . import flags as ff
from .ast import (
    AccountLit,
    AssetLit,
    DestAccount,
    DestAllotment,
    Destination,
    DestInorder,
    DestOneof,
    Expr,
    FnCall,
    FnCallStmt,
    Infix,
    Kept,
    KeptOrTo,
    MonetaryLit,
    NumberLit,
    PercentLit,
    Prefix,
    Program,
    SaveStmt,
    SendStmt,
    SentAll,
    SentValue,
    Source,
    Span,
    SrcAccount,
    SrcCapped,
    SrcInorder,
    SrcOneof,
    SrcOverdraft,
    SrcScaling,
    StringLit,
    VarDecl,
    VarRef,
)
from .errors import LimitExceeded, NumscriptError, render_span
from .interpreter import EXPRESSION_FUNCTIONS, FUNCTION_SIGNATURES, STATEMENT_FUNCTIONS
from .parser import parse
from .valuetypes import ALL_TYPES

ERROR = "error"
WARNING = "warning"

_PRAGMA_RE = re.compile(r"//[ \t]*@feature_flag[ \t]+([A-Za-z0-9_-]+)")
_RETURN_TYPES = {
    "balance": "monetary",
    "overdraft": "monetary",
    "get_asset": "asset",
    "get_amount": "number",
}
_FUNCTION_FLAGS = {
    "overdraft": ff.OVERDRAFT_FUNCTION,
    "get_asset": ff.GET_ASSET_FUNCTION,
    "get_amount": ff.GET_AMOUNT_FUNCTION,
}


class _TVar:
    """An unknown asset; ``link`` points to what it was unified with (a TVar or an asset)."""

    __slots__ = ("link",)

    def __init__(self) -> None:
        self.link: _TVar | str | None = None


def _resolve(t: _TVar | str) -> _TVar | str:
    while isinstance(t, _TVar) and t.link is not None:
        t = t.link
    return t


def _unify(a: _TVar | str, b: _TVar | str) -> bool:
    a, b = _resolve(a), _resolve(b)
    if isinstance(a, str):
        if isinstance(b, str):
            return a == b
        a, b = b, a
    if a is not b:
        a.link = b
    return True


@dataclass(frozen=True, slots=True)
class Diagnostic:
    severity: str  # "error" or "warning"
    message: str
    span: Span | None
    code: str

    @property
    def line(self) -> int:
        return self.span.line if self.span is not None else 0

    @property
    def column(self) -> int:
        return self.span.column if self.span is not None else 0

    def render(self, source: str, filename: str = "<numscript>") -> str:
        return render_span(
            source, self.span, self.message, filename=filename, severity=self.severity
        )


def check(source: str, *, feature_flags: Collection[str] = frozenset()) -> list[Diagnostic]:
    """Statically check ``source``; returns diagnostics sorted by position."""
    try:
        program = parse(source)
    except LimitExceeded as exc:
        return [Diagnostic(ERROR, exc.message, exc.span, "limit-exceeded")]
    except NumscriptError as exc:
        return [Diagnostic(ERROR, exc.message, exc.span, "parse-error")]
    flags = set(feature_flags) | set(_PRAGMA_RE.findall(source))
    try:
        return _Checker(program, flags).run()
    except RecursionError:
        # Backstop only: the parser's max_depth keeps the checker far below the limit.
        return [Diagnostic(ERROR, "script too deeply nested to check", None, "limit-exceeded")]


def has_errors(diagnostics: Collection[Diagnostic]) -> bool:
    return any(d.severity == ERROR for d in diagnostics)


def _literal_portion(expr: Expr) -> Fraction | None:
    if isinstance(expr, PercentLit):
        return expr.value
    if (
        isinstance(expr, Infix)
        and expr.op == "/"
        and isinstance(expr.left, NumberLit)
        and isinstance(expr.right, NumberLit)
        and expr.right.value != 0
    ):
        return Fraction(expr.left.value, expr.right.value)
    return None


def _literal_account(expr: Expr) -> str | None:
    if isinstance(expr, AccountLit) and expr.value is not None:
        return str(expr.value)
    return None


class _Checker:
    def __init__(self, program: Program, flags: set[str]) -> None:
        self.program = program
        self.flags = flags
        self.out: list[Diagnostic] = []
        self.declared: dict[str, VarDecl] = {}
        self.used: set[str] = set()
        self.in_origin = False
        # asset inference: a type per expression node (by id) and per kept declaration
        self.types: dict[int, _TVar | str] = {}
        self.var_types: dict[str, _TVar] = {}
        self.stmt_type: _TVar = _TVar()
        # per statement: accounts (with their colour) an earlier source already empties
        self.emptied: set[str] = set()

    def run(self) -> list[Diagnostic]:
        for flag in self.program.flags:
            if flag.name not in ff.ALL_FLAGS:
                self.error(f"unknown feature flag '{flag.name}'", flag.span, "invalid-feature")
            self.flags.add(flag.name)
        self.check_vars()
        for stmt in self.program.statements:
            self.stmt_type = _TVar()
            self.emptied = set()
            if isinstance(stmt, SendStmt):
                self.check_send(stmt)
            elif isinstance(stmt, SaveStmt):
                self.check_sent(stmt.sent)
                self.expect(stmt.account, "account")
            else:
                self.check_statement_call(stmt)
        for name, decl in self.declared.items():
            if name not in self.used:
                self.warn(f"unused variable ${name}", decl.name_span, "unused-variable")
        self.check_bound_assets()
        return sorted(self.out, key=lambda d: (d.line, d.column))

    # --- asset inference -------------------------------------------------------------

    def node_type(self, expr: Expr) -> _TVar | str:
        t = self.types.get(id(expr))
        if t is None:
            t = self.types[id(expr)] = _TVar()
        return _resolve(t)

    def unify_node(self, expr: Expr, other: _TVar | str) -> None:
        mine = self.node_type(expr)
        if not _unify(mine, other):
            self.error(
                f"mismatched asset: expected {_resolve(mine)}, found {_resolve(other)}",
                expr.span,
                "asset-mismatch",
            )

    def check_bound_assets(self) -> None:
        """Warn about input variables whose asset the script fixes (as the reference, not
        when a type or asset mismatch was found: the inference is then unreliable)."""
        if any(d.code in ("asset-mismatch", "type-mismatch") for d in self.out):
            return
        for name, decl in self.declared.items():
            if decl.origin is not None:
                continue
            asset = _resolve(self.var_types[name])
            if not isinstance(asset, str):
                continue
            if decl.type_name == "asset":
                self.warn(
                    f"${name} is inferred to always be {asset}: any other asset fails at run "
                    "time (write the asset itself instead of a variable?)",
                    decl.span,
                    "bound-asset",
                )
            elif decl.type_name == "monetary":
                self.warn(
                    f"${name} is inferred to always be in {asset}: a monetary of another "
                    "asset fails at run time (declare a number for its amount instead?)",
                    decl.span,
                    "bound-asset",
                )

    # --- reporting -------------------------------------------------------------------

    def error(self, message: str, span: Span | None, code: str) -> None:
        self.out.append(Diagnostic(ERROR, message, span, code))

    def warn(self, message: str, span: Span | None, code: str) -> None:
        self.out.append(Diagnostic(WARNING, message, span, code))

    def require(self, flag: str, span: Span) -> None:
        if flag not in self.flags:
            self.warn(
                f"this feature is experimental: expected the '{flag}' feature flag to be "
                "enabled (#![feature(...)] or // @feature_flag)",
                span,
                "experimental-feature",
            )

    # --- variables -------------------------------------------------------------------

    def check_vars(self) -> None:
        for decl in self.program.vars:
            if decl.type_name not in ALL_TYPES:
                self.error(
                    f"unknown type '{decl.type_name}': expected one of {', '.join(ALL_TYPES)}",
                    decl.type_span,
                    "invalid-type",
                )
            duplicate = decl.name in self.declared
            if duplicate:
                # the first declaration stays the one every use refers to (as the reference)
                self.error(f"duplicate variable ${decl.name}", decl.name_span, "duplicate-variable")
            own_type = _TVar()
            origin = decl.origin
            if origin is not None:
                self.in_origin = True
                if isinstance(origin, FnCall) and origin.name == "meta":
                    self.check_call(origin, allow_meta=True)
                else:
                    if not isinstance(origin, FnCall):
                        self.require(ff.MID_SCRIPT_FUNCTION_CALL, origin.span)
                    found = self.infer(origin)
                    known = found is not None and decl.type_name in ALL_TYPES
                    if known and found != decl.type_name:
                        assert found is not None
                        self.mismatch(decl.type_name, found, origin.span)
                self.unify_node(origin, own_type)
                self.in_origin = False
            if not duplicate:
                self.declared[decl.name] = decl
                self.var_types[decl.name] = own_type

    # --- expressions -----------------------------------------------------------------

    def mismatch(self, expected: str, found: str, span: Span) -> None:
        self.error(
            f"type mismatch: expected a value of type {expected}, found {found}",
            span,
            "type-mismatch",
        )

    def expect(self, expr: Expr, expected: str) -> None:
        found = self.infer(expr)
        if found is not None and found not in expected.split("|"):
            self.mismatch(expected, found, expr.span)

    def infer(self, expr: Expr) -> str | None:
        """The static type of ``expr`` (None when unknown), reporting problems inside it."""
        if isinstance(expr, NumberLit):
            return "number"
        if isinstance(expr, PercentLit):
            return "portion"
        if isinstance(expr, StringLit):
            return "string"
        if isinstance(expr, AssetLit):
            self.unify_node(expr, str(expr.value))
            return "asset"
        if isinstance(expr, VarRef):
            return self.var_type(expr)
        if isinstance(expr, AccountLit):
            if expr.value is None:
                self.require(ff.ACCOUNT_INTERPOLATION, expr.span)
                for part in expr.parts:
                    if isinstance(part, VarRef):
                        found = self.var_type(part)
                        if found is not None and found not in ("number", "string", "account"):
                            self.mismatch("number|string|account", found, part.span)
            return "account"
        if isinstance(expr, MonetaryLit):
            self.expect(expr.asset, "asset")
            self.expect(expr.amount, "number")
            # [$asset 42] has $asset's asset
            self.unify_node(expr, self.node_type(expr.asset))
            return "monetary"
        if isinstance(expr, Prefix):
            self.unify_node(expr, self.node_type(expr.operand))
            found = self.infer(expr.operand)
            if found is not None and found not in ("number", "monetary"):
                self.mismatch("monetary|number", found, expr.operand.span)
                return None
            return found
        if isinstance(expr, Infix):
            return self.infer_infix(expr)
        return self.check_call(expr, allow_meta=False)

    def infer_infix(self, expr: Infix) -> str | None:
        # both operands have one asset (the reference unifies them for every operator)
        self.unify_node(expr.left, self.node_type(expr.right))
        if expr.op == "/":
            self.expect(expr.left, "number")
            self.expect(expr.right, "number")
            if isinstance(expr.right, NumberLit) and expr.right.value == 0:
                self.error("division by zero", expr.span, "divide-by-zero")
            return "portion"
        left = self.infer(expr.left)
        if left is not None and left not in ("number", "monetary"):
            self.mismatch("monetary|number", left, expr.left.span)
            self.infer(expr.right)
            return None
        right = self.infer(expr.right)
        if left is not None and right is not None and right != left:
            self.mismatch(left, right, expr.right.span)
        return left

    def var_type(self, ref: VarRef) -> str | None:
        decl = self.declared.get(ref.name)
        if decl is None:
            self.error(f"unbound variable ${ref.name}", ref.span, "unbound-variable")
            return None
        self.used.add(ref.name)
        self.unify_node(ref, self.var_types[ref.name])
        return decl.type_name if decl.type_name in ALL_TYPES else None

    def check_args(self, call: FnCall) -> None:
        signature = FUNCTION_SIGNATURES[call.name]
        for expected, arg in zip(signature, call.args, strict=False):
            if expected is None:
                self.infer(arg)
            else:
                self.expect(arg, expected)
        for arg in call.args[len(signature) :]:
            self.infer(arg)
        if len(call.args) != len(signature):
            plural = "" if len(signature) == 1 else "s"
            self.error(
                f"wrong number of arguments to {call.name}(): expected {len(signature)} "
                f"argument{plural}, found {len(call.args)}",
                call.span,
                "bad-arity",
            )

    def check_call(self, call: FnCall, *, allow_meta: bool) -> str | None:
        name = call.name
        if name not in EXPRESSION_FUNCTIONS:
            for arg in call.args:
                self.infer(arg)
            hint = " (it is a statement)" if name in STATEMENT_FUNCTIONS else ""
            self.error(f"unknown function '{name}'{hint}", call.name_span, "unbound-function")
            return None
        if not self.in_origin:
            self.require(ff.MID_SCRIPT_FUNCTION_CALL, call.span)
        if name in _FUNCTION_FLAGS:
            self.require(_FUNCTION_FLAGS[name], call.span)
        if name == "meta" and not allow_meta:
            self.error(
                "meta() must be the whole initializer of a variable",
                call.span,
                "nested-meta",
            )
        self.check_args(call)
        if name in ("balance", "overdraft") and len(call.args) > 1:
            self.unify_node(call, self.node_type(call.args[1]))
        elif name == "get_asset" and call.args:
            self.unify_node(call, self.node_type(call.args[0]))
        return _RETURN_TYPES.get(name)

    def check_statement_call(self, stmt: FnCallStmt) -> None:
        call = stmt.call
        if call.name not in STATEMENT_FUNCTIONS:
            for arg in call.args:
                self.infer(arg)
            self.error(
                f"unknown statement function '{call.name}': expected set_tx_meta() or "
                "set_account_meta()",
                call.name_span,
                "unbound-function",
            )
            return
        self.check_args(call)

    # --- statements ------------------------------------------------------------------

    def check_sent(self, sent: SentValue) -> None:
        if isinstance(sent, SentAll):
            self.expect(sent.asset, "asset")
            self.unify_node(sent.asset, self.stmt_type)
        else:
            self.expect(sent, "monetary")
            self.unify_node(sent, self.stmt_type)

    def check_cap(self, expr: Expr, *, unify_first: bool = False) -> None:
        """A cap or overdraft bound: a monetary of the statement's asset (the reference
        unifies a source cap before checking it, the others after, which decides which
        side an asset-mismatch message calls expected)."""
        if unify_first:
            self.unify_node(expr, self.stmt_type)
        self.expect(expr, "monetary")
        if not unify_first:
            self.unify_node(expr, self.stmt_type)

    def check_send(self, stmt: SendStmt) -> None:
        self.check_sent(stmt.sent)
        send_all = isinstance(stmt.sent, SentAll)
        self.check_source(stmt.source, send_all=send_all)
        self.check_destination(stmt.destination)

    def check_source(self, source: Source, *, send_all: bool) -> None:
        if isinstance(source, SrcAccount | SrcOverdraft):
            self.expect(source.address, "account")
            if source.color is not None:
                self.require(ff.ASSET_COLORS, source.color.span)
                self.expect(source.color, "string")
            account = _literal_account(source.address)
            if isinstance(source, SrcOverdraft):
                if source.bound is not None:
                    self.check_cap(source.bound)
                if account == "world":
                    self.warn(
                        "@world is always unbounded: the overdraft clause has no effect",
                        source.address.span,
                        "world-overdraft",
                    )
            else:
                self.check_emptied(source)
            if send_all and account == "world" and isinstance(source, SrcAccount):
                self.error(
                    "cannot send all ([ASSET *]) from an unbounded source",
                    source.span,
                    "unbounded-send-all",
                )
            elif send_all and isinstance(source, SrcOverdraft) and source.bound is None:
                # the account, not the whole clause (as the reference)
                self.error(
                    "cannot send all ([ASSET *]) from an unbounded source",
                    source.address.span,
                    "unbounded-send-all",
                )
        elif isinstance(source, SrcScaling):
            self.require(ff.ASSET_SCALING, source.span)
            self.expect(source.address, "account")
            self.expect(source.through, "account")
            if _literal_account(source.address) == "world":
                self.error("@world cannot be scaled: it is unbounded", source.span, "world-scaling")
        elif isinstance(source, SrcInorder):
            self.check_inorder(source, send_all=send_all)
        elif isinstance(source, SrcOneof):
            self.require(ff.ONEOF, source.span)
            for sub in source.sources:
                self.check_source(sub, send_all=send_all)
        elif isinstance(source, SrcCapped):
            self.check_cap(source.cap, unify_first=True)
            emptied = self.emptied
            self.emptied = set(emptied)  # what a capped source empties is not emptied after
            self.check_source(source.source, send_all=False)
            self.emptied = emptied
        else:
            if send_all:
                self.error(
                    "cannot send all ([ASSET *]) from an allotment source",
                    source.span,
                    "allotment-send-all",
                )
            self.check_allotment([(item.portion, item.span) for item in source.items], source.span)
            for item in source.items:
                emptied = self.emptied
                self.emptied = set(emptied)
                self.check_source(item.source, send_all=False)
                self.emptied = emptied

    def check_emptied(self, source: SrcAccount) -> None:
        """An account already taken from earlier in the statement gives nothing more.

        Keyed by account and colour, where ``\\ ""`` is no colour and a variable colour is
        its name (two uses of ``\\ $c`` are the same colour)."""
        address = source.address
        if not isinstance(address, AccountLit):
            return
        name = ":".join(p if isinstance(p, str) else f"${p.name}" for p in address.parts)
        color = source.color
        if isinstance(color, VarRef):
            name += f"\\${color.name}"
        elif isinstance(color, StringLit) and color.value != "":
            name += f'\\"{color.value}"'
        elif color is not None and not isinstance(color, StringLit):
            return  # a computed colour: unknown
        if name == "world":
            return
        if name in self.emptied:
            self.warn(
                f"@{name.split(chr(92))[0]} was already emptied by an earlier source",
                address.span,
                "emptied-account",
            )
        self.emptied.add(name)

    def check_inorder(self, source: SrcInorder, *, send_all: bool) -> None:
        unbounded_seen: Span | None = None
        for sub in source.sources:
            if unbounded_seen is not None:
                self.warn(
                    "this source is never used: an earlier source is unbounded",
                    sub.span,
                    "unreachable-source",
                )
                unbounded_seen = None  # report once
            self.check_source(sub, send_all=send_all)
            account = _literal_account(sub.address) if isinstance(sub, SrcAccount) else None
            unbounded = account == "world" or (isinstance(sub, SrcOverdraft) and sub.bound is None)
            if unbounded and sub is not source.sources[-1]:
                unbounded_seen = sub.span

    def check_allotment(self, items: list[tuple[Expr | None, Span]], span: Span) -> None:
        total = Fraction(0)
        all_literal = True
        remaining: list[Span] = []
        for index, (portion, item_span) in enumerate(items):
            if portion is None:
                remaining.append(item_span)
                if index != len(items) - 1:
                    self.warn(
                        "'remaining' is usually written last in an allotment",
                        item_span,
                        "remaining-not-last",
                    )
                continue
            self.expect(portion, "portion")
            value = _literal_portion(portion)
            if value is None:
                all_literal = False
            else:
                total += value
        if len(remaining) > 1:
            for extra in remaining[1:]:
                self.error(
                    "only one 'remaining' clause is allowed in an allotment",
                    extra,
                    "duplicate-remaining",
                )
        text = f"{total.numerator}/{total.denominator}"
        if not all_literal:
            if not remaining:
                self.warn(
                    "allotment with variable portions and no 'remaining' clause: it only runs "
                    "when the portions sum to exactly 1",
                    span,
                    "fixed-portion-variable",
                )
            elif total > 1:
                self.error(
                    f"invalid allotment: the fixed portions already exceed 1 ({text})",
                    span,
                    "bad-allotment-sum",
                )
            return
        if not remaining and total != 1:
            self.error(
                f"invalid allotment: expected the portions to sum to 1, found {text}",
                span,
                "bad-allotment-sum",
            )
        elif remaining and total > 1:
            self.error(
                f"invalid allotment: expected the portions before 'remaining' to sum to at "
                f"most 1, found {text}",
                span,
                "bad-allotment-sum",
            )
        elif remaining and total == 1:
            self.warn(
                "redundant 'remaining': the other portions already sum to 1",
                remaining[0],
                "redundant-remaining",
            )

    def check_kept_or_to(self, target: KeptOrTo) -> None:
        if not isinstance(target, Kept):
            self.check_destination(target.destination)

    def check_destination(self, destination: Destination) -> None:
        if isinstance(destination, DestAccount):
            self.expect(destination.address, "account")
        elif isinstance(destination, DestAllotment):
            self.check_allotment(
                [(item.portion, item.span) for item in destination.items], destination.span
            )
            for item in destination.items:
                self.check_kept_or_to(item.target)
        else:
            if isinstance(destination, DestOneof):
                self.require(ff.ONEOF, destination.span)
            assert isinstance(destination, DestInorder | DestOneof)
            for clause in destination.clauses:
                self.check_cap(clause.cap)
                self.check_kept_or_to(clause.target)
            self.check_kept_or_to(destination.remaining)
