"""The parsing of caller-supplied variable strings into Numscript values, and the rules for
account names, assets and colors. The value types themselves (with their names and string
forms) live in the leaf module `valuetypes`.
"""

from __future__ import annotations

import re
from fractions import Fraction
from functools import lru_cache
from typing import TYPE_CHECKING

from .errors import (
    BadPortionParsing,
    InvalidAccountName,
    InvalidAsset,
    InvalidMonetaryLiteral,
    InvalidNumberLiteral,
    InvalidType,
    NumberOutOfRange,
)
from .limits import MAX_AMOUNT, MAX_LITERAL_DIGITS
from .valuetypes import (
    TYPE_ACCOUNT,
    TYPE_ASSET,
    TYPE_MONETARY,
    TYPE_NUMBER,
    TYPE_PORTION,
    TYPE_STRING,
    Account,
    Asset,
    Monetary,
    String,
    Value,
)

if TYPE_CHECKING:
    from .span import Span


__all__ = [
    "is_valid_account",
    "is_valid_asset",
    "is_valid_color",
    "parse_account",
    "parse_asset",
    "parse_monetary",
    "parse_number",
    "parse_portion",
    "parse_typed",
    "scaled_asset",
    "split_asset",
]

_ACCOUNT_RE = re.compile(r"[a-zA-Z0-9_-]+(?::[a-zA-Z0-9_-]+)*")
# The ledger's asset rule (checked on caller input and on every emitted posting).
_ASSET_RE = re.compile(r"[A-Z][A-Z0-9]{0,16}(?:_[A-Z]{1,16})?(?:/[0-9]{1,6})?")
_COLOR_RE = re.compile(r"[A-Z]*")
_INT_RE = re.compile(r"[+-]?[0-9]+")
_PERCENT_RE = re.compile(r"([0-9]+)(?:\.([0-9]+))?%")
_FRACTION_RE = re.compile(r"([0-9]+)[ \t\n\f\r]?/[ \t\n\f\r]?([0-9]+)")


@lru_cache(maxsize=8192)
def is_valid_account(name: str) -> bool:
    return _ACCOUNT_RE.fullmatch(name) is not None


@lru_cache(maxsize=1024)
def is_valid_asset(name: str) -> bool:
    return _ASSET_RE.fullmatch(name) is not None


def is_valid_color(color: str) -> bool:
    return _COLOR_RE.fullmatch(color) is not None


def split_asset(asset: str) -> tuple[str, int]:
    """``EUR/2`` -> (``EUR``, 2); ``EUR`` -> (``EUR``, 0)."""
    base, sep, scale = asset.partition("/")
    if sep and scale.isdigit():
        return base, int(scale)
    return base, 0


def scaled_asset(base: str, scale: int) -> str:
    return base if scale == 0 else f"{base}/{scale}"


def parse_account(raw: str, span: Span | None = None) -> Account:
    if not is_valid_account(raw):
        raise InvalidAccountName(raw, span=span)
    return Account(raw)


def parse_asset(raw: str, span: Span | None = None) -> Asset:
    if not is_valid_asset(raw):
        raise InvalidAsset(raw, span=span)
    return Asset(raw)


def parse_number(raw: str, span: Span | None = None) -> int:
    # Go's big.Int.SetString(raw, 10): optional sign, digits, no underscores, no spaces.
    if _INT_RE.fullmatch(raw) is None:
        raise InvalidNumberLiteral(raw, span=span)
    # counted before int(): Python refuses to convert more than 4,300 digits
    value = int(raw) if len(raw) <= MAX_LITERAL_DIGITS + 1 else None
    if value is None or not -MAX_AMOUNT <= value <= MAX_AMOUNT:
        shown = raw if len(raw) <= 20 else f"a {len(raw)}-character number"
        raise NumberOutOfRange(shown, span)
    return value


def parse_monetary(raw: str, span: Span | None = None) -> Monetary:
    parts = raw.split(" ")
    if len(parts) != 2:
        raise InvalidMonetaryLiteral(raw, span=span)
    amount = parse_number(parts[1], span)
    return Monetary(parse_asset(parts[0], span), amount)


def parse_portion(raw: str, span: Span | None = None) -> Fraction:
    """``15%``, ``12.5%``, ``1/3`` or ``1 / 3``; must lie in [0, 1]."""
    m = _PERCENT_RE.fullmatch(raw)
    if m is not None:
        integral, decimals = m.group(1), m.group(2) or ""
        result = Fraction(int(integral + decimals), 100 * 10 ** len(decimals))
    else:
        m = _FRACTION_RE.fullmatch(raw)
        if m is None:
            raise BadPortionParsing(raw, "invalid format", span=span)
        denominator = int(m.group(2))
        if denominator == 0:
            raise BadPortionParsing(raw, "the denominator is zero", span=span)
        result = Fraction(int(m.group(1)), denominator)
    if result < 0 or result > 1:
        raise BadPortionParsing(raw, "portion must be between 0% and 100% inclusive", span=span)
    return result


def parse_typed(type_: str, raw: str, span: Span | None = None) -> Value:
    """Parse a caller- or metadata-supplied string as a value of the declared type."""
    if type_ == TYPE_MONETARY:
        return parse_monetary(raw, span)
    if type_ == TYPE_ACCOUNT:
        return parse_account(raw, span)
    if type_ == TYPE_PORTION:
        return parse_portion(raw, span)
    if type_ == TYPE_ASSET:
        return parse_asset(raw, span)
    if type_ == TYPE_NUMBER:
        return parse_number(raw, span)
    if type_ == TYPE_STRING:
        return String(raw)
    raise InvalidType(type_, span=span)
