"""Bounds on what one Numscript script may cost: size, nesting, width and work.

A script is data a caller sends (the ledger API takes ``{"script": {"plain": ...}}``), so
each bound is checked with a :class:`~.errors.LimitExceeded` error carrying a span, never a
``RecursionError`` or a worker pinned for seconds:

* ``max_script_bytes``: UTF-8 size of the source, checked before lexing;
* ``max_depth``: nesting of expressions, sources and destinations (parentheses, prefix
  ``-``, operator chains, monetary brackets, call arguments, ``{ }`` blocks, ``max``,
  ``oneof``, ``to``), checked while parsing so the recursive parser, checker and
  interpreter stay far below Python's recursion limit;
* ``max_statements``: statements in the program;
* ``max_sources`` / ``max_destinations``: source / destination nodes in one ``send``;
* ``max_branches``: branches of one ``oneof`` (sources or destinations);
* ``max_steps``: a deterministic work budget per run (expression evaluations, source and
  destination visits, queue pulls, allotment items, balance rows scanned): the same script
  on the same inputs always stops at the same place, whatever the machine's load.

Number literals and every amount the interpreter computes are kept within
``±(2**MAX_AMOUNT_BITS - 1)`` (:class:`~.errors.NumberOutOfRange`), and literal digits are
counted before conversion (Python refuses ``int()`` of more than 4,300 digits).

The defaults suit the marketplace's flows by orders of magnitude (the biggest has 3
statements, depth 4, 6 sources); the ledger reads them from Django settings
(``NUMSCRIPT_*``, ``ledger/conf.py``) and installs them with :func:`configure`.
"""

from __future__ import annotations

from dataclasses import dataclass

#: amounts and numbers stay within +-(2**256 - 1): far beyond any ledger amount (2**63 - 1)
#: or 18-decimal token amounts, and bounded so arithmetic stays cheap
MAX_AMOUNT_BITS = 256
MAX_AMOUNT = 2**MAX_AMOUNT_BITS - 1
#: a literal longer than this cannot be in range (2**256 has 78 digits)
MAX_LITERAL_DIGITS = 80


@dataclass(frozen=True, slots=True)
class Limits:
    max_script_bytes: int = 64 * 1024
    max_depth: int = 50
    max_statements: int = 1_000
    max_sources: int = 1_000
    max_destinations: int = 1_000
    max_branches: int = 1_000
    max_steps: int = 200_000


DEFAULT_LIMITS = Limits()
_current = DEFAULT_LIMITS


def configure(limits: Limits) -> None:
    """Make ``limits`` the default of :func:`~.parser.parse`, :func:`~.checker.check` and
    :func:`~.interpreter.run` when they are called without ``limits=``."""
    global _current
    _current = limits


def current() -> Limits:
    return _current
