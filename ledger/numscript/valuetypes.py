"""The runtime value types of Numscript, their type names and how they are shown.

Representation (chosen for speed, since values are created on the hot path):

* number   -> ``int`` (arbitrary precision, so amounts beyond 64 bits just work)
* portion  -> ``fractions.Fraction`` (exact rationals, ``12.5%`` is ``Fraction(1, 8)``)
* monetary -> :class:`Monetary` (asset + int amount)
* account  -> :class:`Account` (a ``str`` subclass, the name without ``@``)
* asset    -> :class:`Asset` (a ``str`` subclass)
* string   -> :class:`String` (a ``str`` subclass)

The ``str`` subclasses keep the three textual types apart for type checks (``type(v) is
Account``) while costing nothing to compare or hash.

A leaf module (it imports nothing of the package): the errors describe values with it, the
syntax tree holds its literals, and `values` (the parsing of caller-supplied strings) builds
on it, with no import going back up.
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from typing import TypeAlias


class Account(str):
    """An account address, stored without the leading ``@``."""

    __slots__ = ()


class Asset(str):
    """An asset name such as ``USD/2`` or ``COIN``."""

    __slots__ = ()


class String(str):
    """A Numscript string value."""

    __slots__ = ()


@dataclass(frozen=True, slots=True)
class Monetary:
    asset: Asset
    amount: int

    def __str__(self) -> str:
        return f"{self.asset} {self.amount}"


Value: TypeAlias = Monetary | Fraction | int | Account | Asset | String

TYPE_ACCOUNT = "account"
TYPE_ASSET = "asset"
TYPE_MONETARY = "monetary"
TYPE_NUMBER = "number"
TYPE_PORTION = "portion"
TYPE_STRING = "string"
ALL_TYPES = (TYPE_ACCOUNT, TYPE_ASSET, TYPE_MONETARY, TYPE_NUMBER, TYPE_PORTION, TYPE_STRING)

WORLD = Account("world")
ONE = Fraction(1)
ZERO = Fraction(0)


def type_name(value: Value) -> str:
    """The Numscript type name of a runtime value."""
    t = type(value)
    if t is Monetary:
        return TYPE_MONETARY
    if t is int:
        return TYPE_NUMBER
    if t is Fraction:
        return TYPE_PORTION
    if t is Account:
        return TYPE_ACCOUNT
    if t is Asset:
        return TYPE_ASSET
    return TYPE_STRING


def value_to_string(value: Value) -> str:
    """The string form used for metadata (upstream's): ``USD/2 7``, ``3/25``, ``42``, ``acc``.

    Portions always print as ``a/b`` (Go's ``big.Rat.String()``), even ``1/1``.
    """
    t = type(value)
    if t is Fraction:
        assert isinstance(value, Fraction)
        return f"{value.numerator}/{value.denominator}"
    return str(value)


def value_repr(value: Value) -> str:
    """How a value is shown inside an error message."""
    t = type(value)
    if t is Monetary:
        return f"[{value}]"
    if t is Account:
        return f"@{value}"
    if t is String:
        return f'"{value}"'
    return value_to_string(value)


def describe_value(value: Value) -> str:
    return f"{type_name(value)} {value_repr(value)}"
