"""Numscript errors. Every error is a :class:`NumscriptError` carrying a source span, and says
what was expected and what was found.

The kinds mirror the Go interpreter's error types (formancehq/numscript
``interpreter_error.go``); the message texts are ours.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .valuetypes import describe_value, type_name

if TYPE_CHECKING:
    from fractions import Fraction

    from .span import Span
    from .valuetypes import Value


def render_span(
    source: str,
    span: Span | None,
    message: str,
    *,
    filename: str = "<numscript>",
    severity: str = "error",
) -> str:
    """Compiler-style rendering: ``file:line:col: error: message``, the offending line, and a
    ``^~~~`` underline below the span (clipped to the first line of a multi-line span)."""
    if span is None:
        return f"{filename}: {severity}: {message}"
    head = f"{filename}:{span.line}:{span.column}: {severity}: {message}"
    lines = source.split("\n")  # keeps a last empty line, so an error at EOF still shows
    if not 1 <= span.line <= len(lines):
        return head
    text = lines[span.line - 1].rstrip("\r").replace("\t", " ")
    start_col = span.column - 1
    end_col = span.end_column - 1 if span.end_line == span.line else len(text)
    width = max(1, end_col - start_col)
    return f"{head}\n{text}\n{' ' * start_col}^{'~' * (width - 1)}"


class NumscriptError(Exception):
    """Base class of every parse, type and runtime error."""

    def __init__(self, message: str, span: Span | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.span = span

    @property
    def line(self) -> int:
        """1-based line of the error (0 when the error has no position)."""
        return self.span.line if self.span is not None else 0

    @property
    def column(self) -> int:
        """1-based column of the error (0 when the error has no position)."""
        return self.span.column if self.span is not None else 0

    def with_span(self, span: Span | None) -> NumscriptError:
        """Attach a span if the error has none yet (used for values parsed out of context)."""
        if self.span is None:
            self.span = span
        return self

    def render(self, source: str, filename: str = "<numscript>") -> str:
        return render_span(source, self.span, self.message, filename=filename)

    def __str__(self) -> str:
        if self.span is None:
            return self.message
        return f"{self.span.line}:{self.span.column}: {self.message}"


# --- syntax ------------------------------------------------------------------------------


class ParseError(NumscriptError):
    """Lexing or parsing failed."""

    def __init__(self, expected: str, found: str, span: Span | None = None) -> None:
        self.expected = expected
        self.found = found
        super().__init__(f"expected {expected}, found {found}", span)


class NestingTooDeep(ParseError):
    """Expressions, sources or destinations nested deeper than ``Limits.max_depth``."""

    def __init__(self, limit: int, span: Span | None = None) -> None:
        self.limit = limit
        super().__init__(f"at most {limit} levels of nesting", f"level {limit + 1}", span)


# --- variables and types -----------------------------------------------------------------


class UnboundVariable(NumscriptError):
    def __init__(self, name: str, span: Span | None = None) -> None:
        self.name = name
        super().__init__(
            f"unbound variable ${name}: expected it to be declared in the vars block "
            "before this use",
            span,
        )


class MissingVariable(NumscriptError):
    def __init__(self, name: str, type_: str, span: Span | None = None) -> None:
        self.name = name
        self.type = type_
        super().__init__(
            f"missing variable ${name}: expected a {type_} value for it in the inputs, found none",
            span,
        )


class InvalidType(NumscriptError):
    def __init__(self, name: str, span: Span | None = None) -> None:
        self.name = name
        super().__init__(
            f"unknown type '{name}': expected one of account, asset, monetary, number, "
            "portion, string",
            span,
        )


class TypeMismatch(NumscriptError):
    """A value of the wrong type (Go's ``TypeError``)."""

    def __init__(self, expected: str, value: Value, span: Span | None = None) -> None:
        self.expected = expected
        self.value = value
        self.found_type = type_name(value)
        super().__init__(
            f"type mismatch: expected a value of type {expected}, found {describe_value(value)}",
            span,
        )


class InvalidVariableValue(NumscriptError):
    """A string given by the caller (or read from metadata, or built by interpolation) is
    not a valid literal of the expected type."""


class InvalidMonetaryLiteral(InvalidVariableValue):
    def __init__(self, raw: str, span: Span | None = None) -> None:
        self.raw = raw
        super().__init__(
            f"invalid monetary value: expected '<ASSET> <AMOUNT>' such as 'USD/2 100', found '{raw}'",
            span,
        )


class InvalidNumberLiteral(InvalidVariableValue):
    def __init__(self, raw: str, span: Span | None = None) -> None:
        self.raw = raw
        super().__init__(f"invalid number: expected a base-10 integer, found '{raw}'", span)


class BadPortionParsing(InvalidVariableValue):
    def __init__(self, raw: str, reason: str, span: Span | None = None) -> None:
        self.raw = raw
        self.reason = reason
        super().__init__(
            f"invalid portion ({reason}): expected a value between 0 and 1 written like "
            f"'12.5%' or '1/3', found '{raw}'",
            span,
        )


class InvalidAccountName(InvalidVariableValue):
    def __init__(self, name: str, span: Span | None = None) -> None:
        self.name = name
        super().__init__(
            "invalid account name: expected ':'-separated segments of letters, digits, "
            f"'_' or '-', found '{name}'",
            span,
        )


class InvalidAsset(InvalidVariableValue):
    def __init__(self, name: str, span: Span | None = None) -> None:
        self.name = name
        super().__init__(
            "invalid asset: expected an uppercase name with an optional scale such as "
            f"'USD/2', found '{name}'",
            span,
        )


class InvalidColor(InvalidVariableValue):
    def __init__(self, color: str, span: Span | None = None) -> None:
        self.color = color
        super().__init__(
            f'invalid color: expected only uppercase letters A-Z, found "{color}"', span
        )


class CannotCastToString(NumscriptError):
    def __init__(self, value: Value, span: Span | None = None) -> None:
        self.value = value
        super().__init__(
            "cannot interpolate this value into an account name: expected a number, string "
            f"or account, found {describe_value(value)}",
            span,
        )


# --- arithmetic --------------------------------------------------------------------------


class MismatchedCurrency(NumscriptError):
    def __init__(self, expected: str, got: str, span: Span | None = None) -> None:
        self.expected = expected
        self.got = got
        super().__init__(f"mismatched asset: expected {expected}, found {got}", span)


class DivideByZero(NumscriptError):
    def __init__(self, numerator: int, span: Span | None = None) -> None:
        self.numerator = numerator
        super().__init__(
            f"division by zero: expected a non-zero divisor, found {numerator}/0", span
        )


# --- allotments and sources --------------------------------------------------------------


class InvalidAllotmentSum(NumscriptError):
    def __init__(self, actual_sum: Fraction, span: Span | None = None, *, remaining: bool = False):
        self.actual_sum = actual_sum
        sum_text = f"{actual_sum.numerator}/{actual_sum.denominator}"
        if remaining:
            message = (
                "invalid allotment: expected the portions before 'remaining' to sum to at most "
                f"1, found {sum_text}"
            )
        else:
            message = f"invalid allotment: expected the portions to sum to 1, found {sum_text}"
        super().__init__(message, span)


class NegativePortion(NumscriptError):
    def __init__(self, portion: Fraction, span: Span | None = None) -> None:
        self.portion = portion
        super().__init__(
            "invalid allotment: expected a portion between 0 and 1, found "
            f"{portion.numerator}/{portion.denominator}",
            span,
        )


class InvalidAllotmentInSendAll(NumscriptError):
    def __init__(self, span: Span | None = None) -> None:
        super().__init__(
            "cannot send all ([ASSET *]) from an allotment source: expected an account, an "
            "ordered source or a 'max' capped source",
            span,
        )


class InvalidUnboundedInSendAll(NumscriptError):
    def __init__(self, name: str, span: Span | None = None) -> None:
        self.name = name
        super().__init__(
            f"cannot send all ([ASSET *]) from @{name}: expected a bounded source, found an "
            "unbounded one",
            span,
        )


class InvalidUnboundedAddressInScalingAddress(NumscriptError):
    def __init__(self, name: str, span: Span | None = None) -> None:
        self.name = name
        super().__init__(
            f"cannot scale the balances of @{name}: expected an account with a bounded "
            "balance, found an unbounded one",
            span,
        )


class MissingFundsError(NumscriptError):
    """A send (or one part of a source allotment) could not gather the exact amount.

    ``account`` is the account when the failing source is a single account, else ``None``.
    """

    def __init__(
        self,
        *,
        asset: str,
        needed: int,
        available: int,
        account: str | None = None,
        span: Span | None = None,
    ) -> None:
        self.asset = asset
        self.needed = needed
        self.available = available
        self.account = account
        where = f" from @{account}" if account is not None else ""
        super().__init__(
            f"not enough funds{where}: expected [{asset} {needed}], found only "
            f"[{asset} {available}] available",
            span,
        )


class NegativeAmountError(NumscriptError):
    def __init__(self, asset: str, amount: int, span: Span | None = None) -> None:
        self.asset = asset
        self.amount = amount
        super().__init__(
            f"cannot send a negative amount: expected an amount >= 0, found [{asset} {amount}]",
            span,
        )


class NegativeBalanceError(NumscriptError):
    def __init__(self, account: str, asset: str, amount: int, span: Span | None = None) -> None:
        self.account = account
        self.asset = asset
        self.amount = amount
        super().__init__(
            f"balance() of @{account} is negative: expected a balance >= 0, found "
            f"[{asset} {amount}]",
            span,
        )


# --- functions, metadata and features ----------------------------------------------------


class UnboundFunction(NumscriptError):
    def __init__(self, name: str, expected: str, span: Span | None = None) -> None:
        self.name = name
        super().__init__(f"unknown function '{name}': expected {expected}", span)


class BadArity(NumscriptError):
    def __init__(self, name: str, expected: int, given: int, span: Span | None = None) -> None:
        self.name = name
        self.expected = expected
        self.given = given
        plural = "" if expected == 1 else "s"
        super().__init__(
            f"wrong number of arguments to {name}(): expected {expected} argument{plural}, "
            f"found {given}",
            span,
        )


class InvalidNestedMeta(NumscriptError):
    def __init__(self, span: Span | None = None) -> None:
        super().__init__(
            "invalid use of meta(): expected it as the whole initializer of a variable, found "
            "it inside an expression",
            span,
        )


class MetadataNotFound(NumscriptError):
    def __init__(self, account: str, key: str, span: Span | None = None) -> None:
        self.account = account
        self.key = key
        super().__init__(
            f"metadata not found: expected account @{account} to have the key '{key}', "
            "found no such key",
            span,
        )


class ExperimentalFeatureNotEnabled(NumscriptError):
    def __init__(self, flag: str, span: Span | None = None) -> None:
        self.flag = flag
        super().__init__(
            f"this feature is experimental: expected the '{flag}' feature flag to be enabled",
            span,
        )


class InvalidFeature(NumscriptError):
    def __init__(self, feature: str, span: Span | None = None) -> None:
        self.feature = feature
        super().__init__(
            f"unknown feature flag '{feature}': expected one of the experimental-* flags", span
        )


class InternalError(NumscriptError):
    """A produced posting broke an invariant (negative amount, bad asset or account name)."""

    def __init__(self, detail: str, span: Span | None = None) -> None:
        super().__init__(f"internal error: invalid posting ({detail})", span)


# --- limits (ledger/numscript/limits.py) ---------------------------------------------------


class LimitExceeded(NumscriptError):
    """The script is bigger, deeper, wider or costlier than the configured limits allow."""

    def __init__(self, what: str, limit: int, found: int | None, span: Span | None = None):
        self.what = what
        self.limit = limit
        self.found = found
        found_text = f"found {found}" if found is not None else "found more"
        super().__init__(f"script too large: expected at most {limit} {what}, {found_text}", span)


class StepBudgetExceeded(LimitExceeded):
    """The run did more work than ``Limits.max_steps`` allows (counted in steps, so the same
    script and inputs always stop at the same point)."""

    def __init__(self, limit: int, span: Span | None = None) -> None:
        super().__init__("execution steps", limit, None, span)
        self.message = (
            f"script too costly: expected at most {limit} execution steps, the run needed more"
        )
        self.args = (self.message,)


class NumberOutOfRange(NumscriptError):
    """A number literal, input or computed amount beyond +-(2**256 - 1)."""

    def __init__(self, detail: str, span: Span | None = None) -> None:
        super().__init__(
            f"number out of range: expected an integer between -(2**256 - 1) and 2**256 - 1, "
            f"found {detail}",
            span,
        )
