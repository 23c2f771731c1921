"""Numscript: Formance's money-movement DSL, as a pure-Python interpreter.

Owns lexing, parsing, static checking and running Numscript, plus the conformance
(``*.num.specs.json``) runner. Pure logic over plain data: it must not import Django (or any
other app of this project); the ledger reaches it through :class:`Store`.

    program = parse(source)                 # cached by source text (bounded by bytes)
    result = run(program, vars={...}, store=store, feature_flags=frozenset())
    diagnostics = check(source)             # static checks, no execution

Every entry point is bounded by :class:`Limits` (size, nesting, width, a step budget; see
``limits.py``): hostile input gets a :class:`NumscriptError`, never a ``RecursionError``.
"""

from .ast import Program
from .checker import Diagnostic, check
from .errors import (
    BadArity,
    BadPortionParsing,
    CannotCastToString,
    DivideByZero,
    ExperimentalFeatureNotEnabled,
    InternalError,
    InvalidAccountName,
    InvalidAllotmentInSendAll,
    InvalidAllotmentSum,
    InvalidAsset,
    InvalidColor,
    InvalidFeature,
    InvalidMonetaryLiteral,
    InvalidNestedMeta,
    InvalidNumberLiteral,
    InvalidType,
    InvalidUnboundedAddressInScalingAddress,
    InvalidUnboundedInSendAll,
    InvalidVariableValue,
    LimitExceeded,
    MetadataNotFound,
    MismatchedCurrency,
    MissingFundsError,
    MissingVariable,
    NegativeAmountError,
    NegativeBalanceError,
    NegativePortion,
    NestingTooDeep,
    NumberOutOfRange,
    NumscriptError,
    ParseError,
    StepBudgetExceeded,
    TypeMismatch,
    UnboundFunction,
    UnboundVariable,
)
from .interpreter import ExecutionResult, Posting, run
from .limits import Limits
from .parser import parse
from .span import Span
from .store import StaticStore, Store, Unspeculable

__all__ = [
    "BadArity",
    "BadPortionParsing",
    "CannotCastToString",
    "Diagnostic",
    "DivideByZero",
    "ExecutionResult",
    "ExperimentalFeatureNotEnabled",
    "InternalError",
    "InvalidAccountName",
    "InvalidAllotmentInSendAll",
    "InvalidAllotmentSum",
    "InvalidAsset",
    "InvalidColor",
    "InvalidFeature",
    "InvalidMonetaryLiteral",
    "InvalidNestedMeta",
    "InvalidNumberLiteral",
    "InvalidType",
    "InvalidUnboundedAddressInScalingAddress",
    "InvalidUnboundedInSendAll",
    "InvalidVariableValue",
    "LimitExceeded",
    "Limits",
    "MetadataNotFound",
    "MismatchedCurrency",
    "MissingFundsError",
    "MissingVariable",
    "NegativeAmountError",
    "NegativeBalanceError",
    "NegativePortion",
    "NestingTooDeep",
    "NumberOutOfRange",
    "NumscriptError",
    "ParseError",
    "Posting",
    "Program",
    "Span",
    "StaticStore",
    "StepBudgetExceeded",
    "Store",
    "TypeMismatch",
    "UnboundFunction",
    "UnboundVariable",
    "Unspeculable",
    "check",
    "parse",
    "run",
]
