"""Where a piece of Numscript came from: the source range every syntax node and error carries.

A leaf module (it imports nothing of the package), so that the syntax tree, the values and
the errors can all name it without importing each other.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Span:
    """A source range. ``start``/``end`` are character offsets (end exclusive); ``line`` and
    ``column`` are 1-based and point at ``start``; ``end_line``/``end_column`` point at ``end``."""

    start: int
    end: int
    line: int
    column: int
    end_line: int
    end_column: int

    def __str__(self) -> str:
        return f"{self.line}:{self.column}"
