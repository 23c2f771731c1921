"""Small pure helpers shared by the marketplace services: amounts, portions, metadata."""

from __future__ import annotations

from fractions import Fraction
from typing import Any

from ledger.numscript import BadPortionParsing
from ledger.numscript.values import parse_portion
from marketplace.services.errors import InvalidInput

# Stripe refuses charges below 50 minor units of USD (and similar minimums elsewhere).
MIN_CHARGE_AMOUNT = 50
# Amounts a single order, refund or funding may carry (Stripe's 8-digit limit for USD).
MAX_AMOUNT = 99_999_999


def id_parse(value: Any) -> int | None:
    """A database id from untrusted text (Stripe metadata): ASCII digits that fit a bigint,
    else None. `str.isdigit()` alone also accepts "\u00b2", which `int()` refuses."""
    if not isinstance(value, str) or not (value.isascii() and value.isdigit()):
        return None
    number = int(value)
    return number if 0 < number < 2**63 else None


def amount_validate(value: Any, *, field: str, allow_zero: bool = False) -> int:
    """An int amount in minor units (bools, floats and strings are refused, never rounded)."""
    if type(value) is not int:
        raise InvalidInput(
            f"{field} must be an integer amount in minor units.", extra={"field": field}
        )
    if value < 0 or (value == 0 and not allow_zero):
        raise InvalidInput(
            f"{field} must be {'zero or ' if allow_zero else ''}positive.", extra={"field": field}
        )
    if value > MAX_AMOUNT:
        raise InvalidInput(f"{field} must be at most {MAX_AMOUNT}.", extra={"field": field})
    return value


def portion_parse(value: Any, *, field: str) -> Fraction:
    """A Numscript portion ("15%", "12.5%", "3/20") as an exact fraction in [0, 1], parsed by
    the interpreter's own rule (`ledger.numscript.values.parse_portion`): a portion stored here is
    one a flow's `meta()` reads back."""
    if not isinstance(value, str):
        raise InvalidInput(
            f"{field} must be a portion such as '15%' or '3/20'.", extra={"field": field}
        )
    try:
        return parse_portion(value.strip())
    except BadPortionParsing as exc:
        if "between" in exc.reason:
            raise InvalidInput(
                f"{field} must be between 0% and 100%.", extra={"field": field}
            ) from None
        raise InvalidInput(
            f"{field} must be a portion such as '15%' or '3/20', got {value!r}.",
            extra={"field": field},
        ) from None


def portion_text(portion: Fraction) -> str:
    """An exact portion as Numscript reads it: "1/1", "29/40", "0/1"."""
    return f"{portion.numerator}/{portion.denominator}"


def apply_portion(amount: int, portion: Fraction) -> int:
    """floor(amount * portion), exactly."""
    return (amount * portion.numerator) // portion.denominator


def stripe_meta(**values: Any) -> dict[str, str]:
    """Ledger transaction metadata: string values, None dropped (so replays compare equal)."""
    return {key: str(value) for key, value in values.items() if value is not None and value != ""}
