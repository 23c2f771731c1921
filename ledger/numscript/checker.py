"""Static checks of a Numscript program (``numscript check``); nothing here runs the script.

Reports: parse errors, unknown types, duplicate / unbound / unused variables, type
mismatches, mismatched literal assets, unknown functions and bad arity, ``meta()`` outside a
variable initializer, literal division by zero, allotment problems (sum, several or
misplaced ``remaining``, redundant ``remaining``, variable portions without ``remaining``),
send-all from allotments or unbounded sources, sources that can never be reached (after an
unbounded source, or an account already emptied), ``@world`` given an overdraft clause,
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
from .values import ALL_TYPES

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
    return _Checker(program, flags).run()


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


def _literal_asset(expr: Expr | SentAll) -> str | None:
    if isinstance(expr, SentAll):
        expr = expr.asset
        return str(expr.value) if isinstance(expr, AssetLit) else None
    if isinstance(expr, MonetaryLit) and isinstance(expr.asset, AssetLit):
        return str(expr.asset.value)
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
        self.sent_asset: str | None = None

    def run(self) -> list[Diagnostic]:
        for flag in self.program.flags:
            if flag.name not in ff.ALL_FLAGS:
                self.error(f"unknown feature flag '{flag.name}'", flag.span, "invalid-feature")
            self.flags.add(flag.name)
        self.check_vars()
        for stmt in self.program.statements:
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
        return sorted(self.out, key=lambda d: (d.line, d.column))

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
            if decl.name in self.declared:
                self.error(f"duplicate variable ${decl.name}", decl.name_span, "duplicate-variable")
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
                self.in_origin = False
            self.declared[decl.name] = decl

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
            return "monetary"
        if isinstance(expr, Prefix):
            found = self.infer(expr.operand)
            if found is not None and found not in ("number", "monetary"):
                self.mismatch("monetary|number", found, expr.operand.span)
                return None
            return found
        if isinstance(expr, Infix):
            return self.infer_infix(expr)
        return self.check_call(expr, allow_meta=False)

    def infer_infix(self, expr: Infix) -> str | None:
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
        left_asset, right_asset = _literal_asset(expr.left), _literal_asset(expr.right)
        if left_asset and right_asset and left_asset != right_asset:
            self.error(
                f"mismatched asset: expected {left_asset}, found {right_asset}",
                expr.right.span,
                "asset-mismatch",
            )
        return left

    def var_type(self, ref: VarRef) -> str | None:
        decl = self.declared.get(ref.name)
        if decl is None:
            self.error(f"unbound variable ${ref.name}", ref.span, "unbound-variable")
            return None
        self.used.add(ref.name)
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
        else:
            self.expect(sent, "monetary")
        self.sent_asset = _literal_asset(sent)

    def check_cap(self, expr: Expr) -> None:
        self.expect(expr, "monetary")
        asset = _literal_asset(expr)
        if asset and self.sent_asset and asset != self.sent_asset:
            self.error(
                f"mismatched asset: expected {self.sent_asset}, found {asset}",
                expr.span,
                "asset-mismatch",
            )

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
                        source.span,
                        "world-overdraft",
                    )
            if send_all and (
                account == "world" or (isinstance(source, SrcOverdraft) and source.bound is None)
            ):
                self.error(
                    "cannot send all ([ASSET *]) from an unbounded source",
                    source.span,
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
            self.check_cap(source.cap)
            self.check_source(source.source, send_all=False)
        else:
            if send_all:
                self.error(
                    "cannot send all ([ASSET *]) from an allotment source",
                    source.span,
                    "allotment-send-all",
                )
            self.check_allotment([(item.portion, item.span) for item in source.items], source.span)
            for item in source.items:
                self.check_source(item.source, send_all=False)

    def check_inorder(self, source: SrcInorder, *, send_all: bool) -> None:
        emptied: set[str] = set()
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
            if isinstance(sub, SrcAccount) and sub.color is None:
                account = _literal_account(sub.address)
                if account is not None and account != "world":
                    if account in emptied:
                        self.warn(
                            f"@{account} was already emptied by an earlier source",
                            sub.span,
                            "emptied-account",
                        )
                    emptied.add(account)
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
