"""Numscript: Formance's money-movement DSL, as a pure-Python interpreter.

Owns lexing, parsing, static checking and running Numscript, plus the conformance
(``*.num.specs.json``) runner. Pure logic over plain data: it must not import Django (or any
other app of this project); the ledger reaches it through :class:`Store`.

    program = parse(source)                 # cached by source text
    result = run(program, vars={...}, store=store, feature_flags=frozenset())
    diagnostics = check(source)             # static checks, no execution
"""

from .ast import Program, Span
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
    MetadataNotFound,
    MismatchedCurrency,
    MissingFundsError,
    MissingVariable,
    NegativeAmountError,
    NegativeBalanceError,
    NegativePortion,
    NumscriptError,
    ParseError,
    TypeMismatch,
    UnboundFunction,
    UnboundVariable,
)
from .interpreter import ExecutionResult, Posting, run
from .parser import parse
from .store import StaticStore, Store

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
    "MetadataNotFound",
    "MismatchedCurrency",
    "MissingFundsError",
    "MissingVariable",
    "NegativeAmountError",
    "NegativeBalanceError",
    "NegativePortion",
    "NumscriptError",
    "ParseError",
    "Posting",
    "Program",
    "Span",
    "StaticStore",
    "Store",
    "TypeMismatch",
    "UnboundFunction",
    "UnboundVariable",
    "check",
    "parse",
    "run",
]
