"""Numscript lexer: source text -> list of :class:`Token`.

One compiled master pattern is matched once per token (``re.match`` at the current offset);
keywords are told apart from identifiers with a set lookup. Nested ``/* */`` comments are
skipped by hand because a regular expression cannot count nesting.
"""

from __future__ import annotations

import re
from bisect import bisect_right
from typing import NamedTuple

from .errors import ParseError
from .span import Span

KEYWORDS = frozenset(
    {
        "vars",
        "max",
        "source",
        "destination",
        "send",
        "from",
        "up",
        "to",
        "remaining",
        "allowing",
        "unbounded",
        "overdraft",
        "oneof",
        "kept",
        "save",
        "with",
        "scaling",
        "through",
        "feature",
    }
)

# Token kinds. Keywords and punctuation use their own text as kind.
EOF = "EOF"
NUMBER = "NUMBER"
PERCENT = "PERCENT"
STRING = "STRING"
IDENT = "IDENT"
ASSET = "ASSET"
VARIABLE = "VARIABLE"
ACCOUNT = "ACCOUNT"

_VAR = r"\$[a-z_][a-z0-9_]*"
_SEGMENT = rf"(?:[a-zA-Z0-9_-]+|{_VAR})"
_MASTER = re.compile(
    rf"""
    (?P<ws>[ \t\r\n]+)
  | (?P<lcomment>//[^\n]*)
  | (?P<bcomment>/\*)
  | (?P<PERCENT>[0-9]+(?:\.[0-9]+)?%)
  | (?P<NUMBER>[0-9]+(?:_[0-9]+)*)
  | (?P<STRING>"(?:\\"|[^\r\n"])*")
  | (?P<IDENT>[a-z]+[a-z_]*)
  | (?P<ASSET>[A-Z][A-Z0-9]*(?:/[0-9]+)?)
  | (?P<VARIABLE>{_VAR})
  | (?P<ACCOUNT>@{_SEGMENT}(?::{_SEGMENT})*)
  | (?P<hashbang>\#!)
  | (?P<punct>[()\[\]{{}},=*+\-/\\])
    """,
    re.VERBOSE,
)


class Token(NamedTuple):
    kind: str
    text: str
    start: int
    end: int


class SourceMap:
    """Turns character offsets into 1-based (line, column) pairs."""

    __slots__ = ("_starts",)

    def __init__(self, source: str) -> None:
        starts = [0]
        find = source.find
        i = find("\n")
        while i != -1:
            starts.append(i + 1)
            i = find("\n", i + 1)
        self._starts = starts

    def position(self, offset: int) -> tuple[int, int]:
        index = bisect_right(self._starts, offset) - 1
        return index + 1, offset - self._starts[index] + 1

    def span(self, start: int, end: int) -> Span:
        line, column = self.position(start)
        end_line, end_column = self.position(end)
        return Span(start, end, line, column, end_line, end_column)


def describe(token: Token) -> str:
    """How a token is named in 'expected X, found Y' messages."""
    kind = token.kind
    if kind == EOF:
        return "end of input"
    if kind == NUMBER:
        return f"number {token.text}"
    if kind == PERCENT:
        return f"portion {token.text}"
    if kind == STRING:
        return f"string {token.text}"
    if kind == IDENT:
        return f"identifier '{token.text}'"
    if kind == ASSET:
        return f"asset {token.text}"
    if kind == VARIABLE:
        return f"variable {token.text}"
    if kind == ACCOUNT:
        return f"account {token.text}"
    if kind in KEYWORDS:
        return f"keyword '{kind}'"
    return f"'{token.text}'"


def _skip_block_comment(source: str, start: int, smap: SourceMap) -> int:
    """Return the offset just after the block comment opened at ``start`` (nesting allowed)."""
    depth = 0
    i = start
    n = len(source)
    while i < n:
        if source.startswith("/*", i):
            depth += 1
            i += 2
        elif source.startswith("*/", i):
            depth -= 1
            i += 2
            if depth == 0:
                return i
        else:
            i += 1
    raise ParseError("'*/' to close the comment", "end of input", smap.span(start, start + 2))


def tokenize(source: str, smap: SourceMap | None = None) -> list[Token]:
    """Split ``source`` into tokens, ending with an ``EOF`` token. Raises ParseError."""
    if smap is None:
        smap = SourceMap(source)
    tokens: list[Token] = []
    append = tokens.append
    match = _MASTER.match
    keywords = KEYWORDS
    pos = 0
    n = len(source)
    while pos < n:
        m = match(source, pos)
        if m is None:
            bad = source[pos]
            if bad == "@":
                raise ParseError(
                    "an account name after '@'",
                    f"'{source[pos + 1 : pos + 2] or 'end of input'}'",
                    smap.span(pos, pos + 1),
                )
            if bad == '"':
                raise ParseError(
                    "a closing '\"' on the same line", "end of line", smap.span(pos, pos + 1)
                )
            raise ParseError("a token", f"unexpected character '{bad}'", smap.span(pos, pos + 1))
        kind = m.lastgroup
        end = m.end()
        if kind == "ws" or kind == "lcomment":
            pos = end
            continue
        if kind == "bcomment":
            pos = _skip_block_comment(source, pos, smap)
            continue
        text = m.group()
        if kind == "IDENT":
            if text in keywords:
                kind = text
        elif kind == "punct" or kind == "hashbang":
            kind = text
        assert kind is not None
        append(Token(kind, text, pos, end))
        pos = end
    append(Token(EOF, "", n, n))
    return tokens
