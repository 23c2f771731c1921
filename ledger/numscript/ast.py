"""Numscript syntax tree: frozen dataclasses, each carrying the :class:`Span` it came from.

Literal values are computed once by the parser (``NumberLit.value`` is an ``int``,
``PercentLit.value`` a ``Fraction``, a plain ``@account`` literal its :class:`Account`), so the
interpreter never re-reads source text.
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from typing import TypeAlias

from .span import Span as Span
from .valuetypes import Account, Asset, String

# --- expressions -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class NumberLit:
    value: int
    span: Span


@dataclass(frozen=True, slots=True)
class PercentLit:
    value: Fraction
    span: Span


@dataclass(frozen=True, slots=True)
class StringLit:
    value: String
    span: Span


@dataclass(frozen=True, slots=True)
class AssetLit:
    value: Asset
    span: Span


@dataclass(frozen=True, slots=True)
class VarRef:
    name: str
    span: Span


@dataclass(frozen=True, slots=True)
class AccountLit:
    """``@a:b:$c``. ``parts`` holds text segments and :class:`VarRef` segments (interpolation).
    ``value`` is the ready-made account when no segment is a variable, else ``None``."""

    parts: tuple[str | VarRef, ...]
    value: Account | None
    span: Span


@dataclass(frozen=True, slots=True)
class MonetaryLit:
    asset: Expr
    amount: Expr
    span: Span


@dataclass(frozen=True, slots=True)
class Prefix:
    op: str  # only "-"
    operand: Expr
    span: Span


@dataclass(frozen=True, slots=True)
class Infix:
    op: str  # "+", "-" or "/"
    left: Expr
    right: Expr
    span: Span


@dataclass(frozen=True, slots=True)
class FnCall:
    name: str
    name_span: Span
    args: tuple[Expr, ...]
    span: Span


Expr: TypeAlias = (
    NumberLit
    | PercentLit
    | StringLit
    | AssetLit
    | VarRef
    | AccountLit
    | MonetaryLit
    | Prefix
    | Infix
    | FnCall
)
LITERALS = (NumberLit, PercentLit, StringLit, AssetLit)


# --- sources -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SrcAccount:
    address: Expr
    color: Expr | None
    span: Span


@dataclass(frozen=True, slots=True)
class SrcOverdraft:
    """``@a allowing unbounded overdraft`` (``bound is None``) or
    ``@a allowing overdraft up to [A n]``."""

    address: Expr
    color: Expr | None
    bound: Expr | None
    span: Span


@dataclass(frozen=True, slots=True)
class SrcScaling:
    address: Expr
    through: Expr
    span: Span


@dataclass(frozen=True, slots=True)
class SrcInorder:
    sources: tuple[Source, ...]
    span: Span


@dataclass(frozen=True, slots=True)
class SrcOneof:
    sources: tuple[Source, ...]
    span: Span


@dataclass(frozen=True, slots=True)
class SrcCapped:
    cap: Expr
    source: Source
    span: Span


@dataclass(frozen=True, slots=True)
class SrcAllotItem:
    portion: Expr | None  # None means `remaining`
    source: Source
    span: Span


@dataclass(frozen=True, slots=True)
class SrcAllotment:
    items: tuple[SrcAllotItem, ...]
    span: Span


Source: TypeAlias = (
    SrcAccount | SrcOverdraft | SrcScaling | SrcInorder | SrcOneof | SrcCapped | SrcAllotment
)


# --- destinations ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Kept:
    span: Span


@dataclass(frozen=True, slots=True)
class To:
    destination: Destination
    span: Span


KeptOrTo: TypeAlias = Kept | To


@dataclass(frozen=True, slots=True)
class DestAccount:
    address: Expr
    span: Span


@dataclass(frozen=True, slots=True)
class DestAllotItem:
    portion: Expr | None  # None means `remaining`
    target: KeptOrTo
    span: Span


@dataclass(frozen=True, slots=True)
class DestAllotment:
    items: tuple[DestAllotItem, ...]
    span: Span


@dataclass(frozen=True, slots=True)
class DestCapClause:
    cap: Expr
    target: KeptOrTo
    span: Span


@dataclass(frozen=True, slots=True)
class DestInorder:
    clauses: tuple[DestCapClause, ...]
    remaining: KeptOrTo
    span: Span


@dataclass(frozen=True, slots=True)
class DestOneof:
    clauses: tuple[DestCapClause, ...]
    remaining: KeptOrTo
    span: Span


Destination: TypeAlias = DestAccount | DestAllotment | DestInorder | DestOneof


# --- statements and program --------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SentAll:
    """``[ASSET *]``: send (or save) everything the source can give."""

    asset: Expr
    span: Span


SentValue: TypeAlias = Expr | SentAll


@dataclass(frozen=True, slots=True)
class SendStmt:
    sent: SentValue
    source: Source
    destination: Destination
    span: Span


@dataclass(frozen=True, slots=True)
class SaveStmt:
    sent: SentValue
    account: Expr
    span: Span


@dataclass(frozen=True, slots=True)
class FnCallStmt:
    call: FnCall
    span: Span


Statement: TypeAlias = SendStmt | SaveStmt | FnCallStmt


@dataclass(frozen=True, slots=True)
class VarDecl:
    type_name: str
    type_span: Span
    name: str
    name_span: Span
    origin: Expr | None
    span: Span


@dataclass(frozen=True, slots=True)
class FeatureFlag:
    name: str
    span: Span


@dataclass(frozen=True, slots=True)
class PreloadEntry:
    """A source balance the interpreter can ask the store for before running: ``sent`` yields
    the asset (a monetary expression or a ``[ASSET *]``), ``account``/``color`` the row.
    ``all_scales`` asks for every scale of the asset (``with scaling through``)."""

    sent: SentValue
    account: Expr
    color: Expr | None
    all_scales: bool


@dataclass(frozen=True, slots=True)
class Program:
    source: str
    flags: tuple[FeatureFlag, ...]
    vars: tuple[VarDecl, ...]
    statements: tuple[Statement, ...]
    # Computed by the parser: the statically visible source balances (see PreloadEntry).
    preload: tuple[PreloadEntry, ...]
