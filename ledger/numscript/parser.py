"""Recursive-descent Numscript parser: one ``parse_<rule>`` method per grammar rule.

Grammar (after formancehq/numscript's ``Numscript.g4``; ``{}`` repetition, ``[]`` option)::

    program      := [feature] [vars] {statement} EOF
    feature      := '#!' '[' 'feature' '(' STRING {',' STRING} ')' ']'
    vars         := 'vars' '{' {IDENT VARIABLE ['=' expr]} '}'
    statement    := 'send' sent '(' 'source' '=' source 'destination' '=' destination ')'
                  | 'save' sent 'from' expr
                  | call
    sent         := '[' expr '*' ']' | expr
    source       := '{' {allot_src}+ '}' | '{' {source} '}' | 'oneof' '{' {source}+ '}'
                  | 'max' expr 'from' source
                  | expr ['\\' expr] ['allowing' ('unbounded' 'overdraft'
                                                  | 'overdraft' 'up' 'to' expr)]
                  | expr 'with' 'scaling' 'through' expr
    allot_src    := (expr | 'remaining') 'from' source
    destination  := '{' {allot_dest}+ '}' | '{' {cap_clause} 'remaining' kept_or_to '}'
                  | 'oneof' '{' {cap_clause} 'remaining' kept_or_to '}' | expr
    allot_dest   := (expr | 'remaining') kept_or_to
    cap_clause   := 'max' expr kept_or_to
    kept_or_to   := 'kept' | 'to' destination
    expr         := additive
    additive     := division {('+' | '-') division}
    division     := prefix {'/' prefix}
    prefix       := '-' prefix | primary
    primary      := NUMBER | PERCENT | STRING | ASSET | VARIABLE | ACCOUNT
                  | '[' expr expr ']' | '(' expr ')' | call
    call         := (IDENT | 'overdraft') '(' [expr {',' expr}] ')'

A ``{`` that starts with ``remaining`` or ``<expr> from`` opens a source allotment; inside
destinations a ``{`` opens an in-order block when it starts with ``max`` and an allotment
otherwise (``{ remaining kept }`` is an allotment, as in the ANTLR grammar).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from fractions import Fraction

from . import lexer as lx
from . import limits as lim
from .ast import (
    AccountLit,
    AssetLit,
    DestAccount,
    DestAllotItem,
    DestAllotment,
    DestCapClause,
    Destination,
    DestInorder,
    DestOneof,
    Expr,
    FeatureFlag,
    FnCall,
    FnCallStmt,
    Infix,
    Kept,
    KeptOrTo,
    MonetaryLit,
    NumberLit,
    PercentLit,
    Prefix,
    PreloadEntry,
    Program,
    SaveStmt,
    SendStmt,
    SentAll,
    SentValue,
    Source,
    Span,
    SrcAccount,
    SrcAllotItem,
    SrcAllotment,
    SrcCapped,
    SrcInorder,
    SrcOneof,
    SrcOverdraft,
    SrcScaling,
    Statement,
    StringLit,
    To,
    VarDecl,
    VarRef,
)
from .errors import LimitExceeded, NestingTooDeep, NumberOutOfRange, ParseError
from .lexer import SourceMap, Token, describe, tokenize
from .valuetypes import Account, Asset, String

_EXPR_START = frozenset(
    {
        lx.NUMBER,
        lx.PERCENT,
        lx.STRING,
        lx.ASSET,
        lx.VARIABLE,
        lx.ACCOUNT,
        lx.IDENT,
        "overdraft",
        "[",
        "(",
        "-",
    }
)


class Parser:
    __slots__ = (
        "_depth",
        "_destinations",
        "_limits",
        "_pos",
        "_smap",
        "_source",
        "_sources",
        "_tokens",
        "_work",
        "_work_limit",
    )

    def __init__(self, source: str, limits: lim.Limits | None = None) -> None:
        limits = limits if limits is not None else lim.current()
        check_size(source, limits)
        self._source = source
        self._limits = limits
        self._smap = SourceMap(source)
        self._tokens = tokenize(source, self._smap)
        self._pos = 0
        self._depth = 0
        self._sources = 0
        self._destinations = 0
        # Parsing is linear but for the retries of `[ASSET -n]` (see _resplit_monetary): bound
        # the expressions built so that no token layout makes it blow up.
        self._work = 0
        self._work_limit = 4 * len(self._tokens) + 1_000

    # --- token stream ----------------------------------------------------------------

    def _peek(self, offset: int = 0) -> Token:
        index = self._pos + offset
        tokens = self._tokens
        return tokens[index] if index < len(tokens) else tokens[-1]

    def _advance(self) -> Token:
        token = self._tokens[self._pos]
        if token.kind != lx.EOF:
            self._pos += 1
        return token

    def expect(self, kind: str, what: str | None = None) -> Token:
        """Consume a token of ``kind`` or raise 'expected <what>, found <token>'."""
        token = self._tokens[self._pos]
        if token.kind != kind:
            raise self._error(what or f"'{kind}'", token)
        self._pos += 1
        return token

    def skip_if(self, kind: str) -> bool:
        """Consume the next token if it is of ``kind``."""
        if self._tokens[self._pos].kind == kind:
            self._pos += 1
            return True
        return False

    def _error(self, expected: str, token: Token) -> ParseError:
        end = token.end if token.end > token.start else token.start + 1
        end = min(end, len(self._source)) if self._source else 0
        start = min(token.start, end)
        return ParseError(expected, describe(token), self._smap.span(start, max(start, end)))

    def _enter(self, token: Token) -> None:
        """One level deeper (an expression, source or destination inside another)."""
        self._depth += 1
        if self._depth > self._limits.max_depth:
            raise NestingTooDeep(self._limits.max_depth, self._token_span(token))

    def _token_span(self, token: Token) -> Span:
        return self._smap.span(token.start, token.end)

    def _span(self, start: int, end_token: Token | None = None) -> Span:
        """Span from offset ``start`` to the end of the previous (or given) token."""
        if end_token is None:
            end_token = self._tokens[self._pos - 1] if self._pos > 0 else self._tokens[0]
        return self._smap.span(start, end_token.end)

    def _span_of(self, node_span: Span, end: Span) -> Span:
        return self._smap.span(node_span.start, end.end)

    # --- program ---------------------------------------------------------------------

    def parse_program(self) -> Program:
        flags = self.parse_feature() if self._peek().kind == "#!" else ()
        decls = self.parse_vars() if self._peek().kind == "vars" else ()
        statements: list[Statement] = []
        max_statements = self._limits.max_statements
        while self._peek().kind != lx.EOF:
            if len(statements) == max_statements:
                raise LimitExceeded(
                    "statements",
                    max_statements,
                    len(statements) + 1,
                    self._token_span(self._peek()),
                )
            statements.append(self.parse_statement())
        stmts = tuple(statements)
        return Program(self._source, flags, decls, stmts, _preload_plan(stmts))

    def parse_feature(self) -> tuple[FeatureFlag, ...]:
        self.expect("#!")
        self.expect("[")
        self.expect("feature", "'feature'")
        self.expect("(")
        flags = [self._parse_flag()]
        while self.skip_if(","):
            flags.append(self._parse_flag())
        self.expect(")", "',' or ')'")
        self.expect("]")
        return tuple(flags)

    def _parse_flag(self) -> FeatureFlag:
        token = self.expect(lx.STRING, "a feature flag name string")
        return FeatureFlag(token.text[1:-1], self._smap.span(token.start, token.end))

    def parse_vars(self) -> tuple[VarDecl, ...]:
        self.expect("vars")
        self.expect("{", "'{' after 'vars'")
        decls: list[VarDecl] = []
        while not self.skip_if("}"):
            decls.append(self.parse_var_decl())
        return tuple(decls)

    def parse_var_decl(self) -> VarDecl:
        type_token = self.expect(lx.IDENT, "a type name (account, asset, monetary, ...) or '}'")
        name_token = self.expect(lx.VARIABLE, "a variable name such as $amount")
        origin = self.parse_expr() if self.skip_if("=") else None
        return VarDecl(
            type_name=type_token.text,
            type_span=self._smap.span(type_token.start, type_token.end),
            name=name_token.text[1:],
            name_span=self._smap.span(name_token.start, name_token.end),
            origin=origin,
            span=self._span(type_token.start),
        )

    # --- statements ------------------------------------------------------------------

    def parse_statement(self) -> Statement:
        token = self._peek()
        kind = token.kind
        if kind == "send":
            return self.parse_send()
        if kind == "save":
            return self.parse_save()
        if (kind == lx.IDENT or kind == "overdraft") and self._peek(1).kind == "(":
            call = self.parse_call()
            return FnCallStmt(call, call.span)
        raise self._error("a statement (send, save or a function call)", token)

    def parse_send(self) -> SendStmt:
        start = self.expect("send").start
        self._sources = self._destinations = 0
        sent = self.parse_sent_value()
        self.expect("(", "'(' after the sent value")
        self.expect("source", "'source'")
        self.expect("=", "'=' after 'source'")
        source = self.parse_source()
        self.expect("destination", "'destination'")
        self.expect("=", "'=' after 'destination'")
        destination = self.parse_destination()
        self.expect(")", "')' to close the send statement")
        return SendStmt(sent, source, destination, self._span(start))

    def parse_save(self) -> SaveStmt:
        start = self.expect("save").start
        sent = self.parse_sent_value()
        self.expect("from", "'from'")
        account = self.parse_expr()
        return SaveStmt(sent, account, self._span(start))

    def parse_sent_value(self) -> SentValue:
        if self._peek().kind != "[":
            return self.parse_expr()
        start = self._advance().start
        asset, amount = self._parse_monetary_body(allow_star=True)
        if amount is None:
            return SentAll(asset, self._span(start))
        monetary = MonetaryLit(asset, amount, self._span(start))
        return self.parse_additive(monetary)

    # --- sources ---------------------------------------------------------------------

    def _count_source(self, token: Token) -> None:
        self._sources += 1
        if self._sources > self._limits.max_sources:
            raise LimitExceeded(
                "sources in one send", self._limits.max_sources, None, self._token_span(token)
            )

    def _count_destination(self, token: Token) -> None:
        self._destinations += 1
        if self._destinations > self._limits.max_destinations:
            raise LimitExceeded(
                "destinations in one send",
                self._limits.max_destinations,
                None,
                self._token_span(token),
            )

    def _count_branch(self, count: int, token: Token) -> None:
        if count > self._limits.max_branches:
            raise LimitExceeded(
                "branches in one 'oneof'", self._limits.max_branches, None, self._token_span(token)
            )

    def parse_source(self) -> Source:
        token = self._peek()
        self._enter(token)
        self._count_source(token)
        source = self._parse_source(token)
        self._depth -= 1
        return source

    def _parse_source(self, token: Token) -> Source:
        kind = token.kind
        if kind == "{":
            return self.parse_source_block()
        if kind == "oneof":
            self._advance()
            self.expect("{", "'{' after 'oneof'")
            sources: list[Source] = []
            while not self.skip_if("}"):
                self._count_branch(len(sources) + 1, self._peek())
                sources.append(self.parse_source())
            if not sources:
                raise self._error("at least one source in 'oneof'", self._tokens[self._pos - 1])
            return SrcOneof(tuple(sources), self._span(token.start))
        if kind == "max":
            self._advance()
            cap = self.parse_expr()
            self.expect("from", "'from' after the 'max' cap")
            inner = self.parse_source()
            return SrcCapped(cap, inner, self._span(token.start))
        if kind not in _EXPR_START:
            raise self._error("a source (an account, '{', 'max' or 'oneof')", token)
        return self.parse_account_source(self.parse_expr())

    def parse_account_source(self, address: Expr) -> Source:
        start = address.span.start
        color = self.parse_expr() if self.skip_if("\\") else None
        if self.skip_if("allowing"):
            if self.skip_if("unbounded"):
                self.expect("overdraft", "'overdraft' after 'unbounded'")
                return SrcOverdraft(address, color, None, self._span(start))
            self.expect("overdraft", "'unbounded' or 'overdraft' after 'allowing'")
            self.expect("up", "'up' after 'overdraft'")
            self.expect("to", "'to' after 'up'")
            bound = self.parse_expr()
            return SrcOverdraft(address, color, bound, self._span(start))
        if color is None and self.skip_if("with"):
            self.expect("scaling", "'scaling' after 'with'")
            self.expect("through", "'through' after 'scaling'")
            through = self.parse_expr()
            return SrcScaling(address, through, self._span(start))
        return SrcAccount(address, color, self._span(start))

    def parse_source_block(self) -> Source:
        start = self.expect("{").start
        token = self._peek()
        if token.kind == "}":
            self._advance()
            return SrcInorder((), self._span(start))
        if token.kind == "remaining":
            return self._parse_source_allotment(start, None)
        if token.kind in _EXPR_START:
            first = self.parse_expr()
            if self._peek().kind == "from":
                return self._parse_source_allotment(start, first)
            self._count_source(token)
            sources: list[Source] = [self.parse_account_source(first)]
        else:
            sources = [self.parse_source()]
        while not self.skip_if("}"):
            sources.append(self.parse_source())
        return SrcInorder(tuple(sources), self._span(start))

    def _parse_source_allotment(self, start: int, first: Expr | None) -> SrcAllotment:
        items: list[SrcAllotItem] = []
        portion: Expr | None = first
        pending = first is not None
        while True:
            if pending:
                item_start = portion.span.start if portion is not None else 0
                pending = False
            else:
                token = self._peek()
                item_start = token.start
                if token.kind == "remaining":
                    self._advance()
                    portion = None
                elif token.kind in _EXPR_START:
                    portion = self.parse_expr()
                else:
                    raise self._error("a portion or 'remaining' in the source allotment", token)
            self.expect("from", "'from' after the allotment portion")
            items.append(SrcAllotItem(portion, self.parse_source(), self._span(item_start)))
            if self.skip_if("}"):
                return SrcAllotment(tuple(items), self._span(start))

    # --- destinations ----------------------------------------------------------------

    def parse_destination(self) -> Destination:
        token = self._peek()
        self._enter(token)
        self._count_destination(token)
        destination = self._parse_destination(token)
        self._depth -= 1
        return destination

    def _parse_destination(self, token: Token) -> Destination:
        if token.kind == "{":
            self._advance()
            if self._peek().kind == "max":
                clauses, remaining = self._parse_capped_clauses(oneof=False)
                return DestInorder(clauses, remaining, self._span(token.start))
            return self._parse_destination_allotment(token.start)
        if token.kind == "oneof":
            self._advance()
            self.expect("{", "'{' after 'oneof'")
            clauses, remaining = self._parse_capped_clauses(oneof=True)
            return DestOneof(clauses, remaining, self._span(token.start))
        if token.kind not in _EXPR_START:
            raise self._error("a destination (an account, '{' or 'oneof')", token)
        address = self.parse_expr()
        return DestAccount(address, address.span)

    def _parse_capped_clauses(self, *, oneof: bool) -> tuple[tuple[DestCapClause, ...], KeptOrTo]:
        clauses: list[DestCapClause] = []
        while True:
            token = self._peek()
            if token.kind == "max":
                if oneof:
                    self._count_branch(len(clauses) + 1, token)
                self._count_destination(token)
                self._advance()
                cap = self.parse_expr()
                target = self.parse_kept_or_to()
                clauses.append(DestCapClause(cap, target, self._span(token.start)))
            elif token.kind == "remaining":
                self._advance()
                remaining = self.parse_kept_or_to()
                self.expect("}", "'}' after the 'remaining' clause")
                return tuple(clauses), remaining
            else:
                raise self._error("'max' or 'remaining'", token)

    def _parse_destination_allotment(self, start: int) -> DestAllotment:
        items: list[DestAllotItem] = []
        while True:
            token = self._peek()
            portion: Expr | None
            if token.kind == "remaining":
                self._advance()
                portion = None
            elif token.kind in _EXPR_START:
                portion = self.parse_expr()
            else:
                raise self._error("a portion, 'remaining' or 'max' in the destination", token)
            self._count_destination(token)
            target = self.parse_kept_or_to()
            items.append(DestAllotItem(portion, target, self._span(token.start)))
            if self.skip_if("}"):
                return DestAllotment(tuple(items), self._span(start))

    def parse_kept_or_to(self) -> KeptOrTo:
        token = self._peek()
        if token.kind == "kept":
            self._advance()
            return Kept(self._span(token.start))
        if token.kind == "to":
            self._advance()
            destination = self.parse_destination()
            return To(destination, self._span(token.start))
        raise self._error("'to' or 'kept'", token)

    # --- expressions -----------------------------------------------------------------

    def parse_expr(self) -> Expr:
        return self.parse_additive(None)

    def parse_additive(self, first: Expr | None) -> Expr:
        # `a + b + c` nests to the left: each operator of a chain is one more level
        depth = self._depth
        left = self.parse_division(first)
        while True:
            token = self._peek()
            kind = token.kind
            if kind != "+" and kind != "-":
                self._depth = depth
                return left
            self._advance()
            self._enter(token)
            right = self.parse_division(None)
            left = Infix(kind, left, right, self._span_of(left.span, right.span))

    def parse_division(self, first: Expr | None) -> Expr:
        depth = self._depth
        left = first if first is not None else self.parse_prefix()
        while True:
            token = self._peek()
            if token.kind != "/":
                self._depth = depth
                return left
            self._advance()
            self._enter(token)
            right = self.parse_prefix()
            left = Infix("/", left, right, self._span_of(left.span, right.span))

    def parse_prefix(self) -> Expr:
        token = self._peek()
        if token.kind == "-":
            self._advance()
            self._enter(token)
            operand = self.parse_prefix()
            self._depth -= 1
            return Prefix("-", operand, self._smap.span(token.start, operand.span.end))
        return self.parse_primary()

    def parse_primary(self) -> Expr:
        token = self._peek()
        kind = token.kind
        smap = self._smap
        self._work += 1
        if self._work > self._work_limit:
            raise LimitExceeded(
                "parse steps for this script", self._work_limit, None, self._token_span(token)
            )
        if kind == lx.NUMBER:
            self._advance()
            return NumberLit(_number_literal(token, smap), smap.span(token.start, token.end))
        if kind == lx.PERCENT:
            self._advance()
            return PercentLit(_percent_literal(token, smap), smap.span(token.start, token.end))
        if kind == lx.STRING:
            self._advance()
            return StringLit(String(token.text[1:-1]), smap.span(token.start, token.end))
        if kind == lx.ASSET:
            self._advance()
            return AssetLit(Asset(token.text), smap.span(token.start, token.end))
        if kind == lx.VARIABLE:
            self._advance()
            return VarRef(token.text[1:], smap.span(token.start, token.end))
        if kind == lx.ACCOUNT:
            self._advance()
            return self._account_literal(token)
        if kind == "[":
            self._advance()
            self._enter(token)
            asset, amount = self._parse_monetary_body(allow_star=False)
            self._depth -= 1
            assert amount is not None
            return MonetaryLit(asset, amount, self._span(token.start))
        if kind == "(":
            self._advance()
            self._enter(token)
            inner = self.parse_expr()
            self.expect(")", "')'")
            self._depth -= 1
            return inner
        if (kind == lx.IDENT or kind == "overdraft") and self._peek(1).kind == "(":
            self._enter(token)
            call = self.parse_call()
            self._depth -= 1
            return call
        raise self._error("an expression", token)

    def _parse_monetary_body(self, *, allow_star: bool) -> tuple[Expr, Expr | None]:
        """After '[': ``asset amount ']'`` (or ``asset '*' ']'`` when ``allow_star``).

        ``[EUR/2 -100]`` is ambiguous for a greedy expression parser (``EUR/2 - 100``). Like
        ANTLR's adaptive prediction, keep the longest asset expression that still leaves a
        valid amount: on failure, retry with the asset cut before each top-level ``-``,
        rightmost first."""
        begin = self._pos
        asset = self.parse_expr()
        token = self._peek()
        if token.kind == "*":
            if not allow_star:
                raise self._error(
                    "an amount ('[ASSET *]' is only allowed as the value sent by send or save)",
                    token,
                )
            self._advance()
            self.expect("]", "']' after '*'")
            return asset, None
        if token.kind not in _EXPR_START:
            split = self._resplit_monetary(begin, self._pos)
            if split is not None:
                return split
        amount = self.parse_expr()
        self.expect("]", "']' to close the monetary literal")
        return asset, amount

    def _resplit_monetary(self, begin: int, end: int) -> tuple[Expr, Expr] | None:
        tokens = self._tokens
        nesting = self._depth
        depth = 0
        cuts = []
        for index in range(begin, end):
            kind = tokens[index].kind
            if kind in ("(", "["):
                depth += 1
            elif kind in (")", "]"):
                depth -= 1
            elif kind == "-" and depth == 0 and index > begin:
                cuts.append(index)
        for cut in reversed(cuts):
            stop = tokens[cut].start
            # parse the asset alone: only its tokens (cost counted, so that nested retries
            # stay within the parse budget), positions relative to `begin`
            self._work += cut - begin
            self._tokens = [*tokens[begin:cut], Token(lx.EOF, "", stop, stop)]
            self._pos = 0
            try:
                asset = self.parse_expr()
                complete = self._pos == cut - begin
            except ParseError:
                complete = False
                self._work += 4  # a failed attempt costs an exception: count it too
            finally:
                self._tokens = tokens
                self._depth = nesting
            if not complete:
                continue
            self._pos = cut
            try:
                amount = self.parse_expr()
            except ParseError:
                self._depth = nesting
                continue
            if self.skip_if("]"):
                return asset, amount
        self._pos = end
        return None

    def parse_call(self) -> FnCall:
        name = self._advance()
        self.expect("(")
        args: list[Expr] = []
        if not self.skip_if(")"):
            args.append(self.parse_expr())
            while self.skip_if(","):
                args.append(self.parse_expr())
            self.expect(")", "',' or ')' in the argument list")
        return FnCall(
            name.text,
            self._smap.span(name.start, name.end),
            tuple(args),
            self._span(name.start),
        )

    def _account_literal(self, token: Token) -> AccountLit:
        parts: list[str | VarRef] = []
        offset = token.start + 1
        has_var = False
        for segment in token.text[1:].split(":"):
            if segment.startswith("$"):
                has_var = True
                end = offset + len(segment)
                parts.append(VarRef(segment[1:], self._smap.span(offset, end)))
            else:
                parts.append(segment)
            offset += len(segment) + 1
        value = None if has_var else Account(token.text[1:])
        return AccountLit(tuple(parts), value, self._smap.span(token.start, token.end))


# --- preload plan ------------------------------------------------------------------------


def _has_call(expr: Expr | None) -> bool:
    if expr is None:
        return False
    t = type(expr)
    if t is FnCall:
        return True
    if t is MonetaryLit:
        assert isinstance(expr, MonetaryLit)
        return _has_call(expr.asset) or _has_call(expr.amount)
    if t is Infix:
        assert isinstance(expr, Infix)
        return _has_call(expr.left) or _has_call(expr.right)
    if t is Prefix:
        assert isinstance(expr, Prefix)
        return _has_call(expr.operand)
    return False


def _sent_has_call(sent: SentValue) -> bool:
    return _has_call(sent.asset) if isinstance(sent, SentAll) else _has_call(sent)


def _collect_sources(sent: SentValue, source: Source, out: list[PreloadEntry]) -> None:
    if isinstance(source, SrcAccount):
        if not _has_call(source.address) and not _has_call(source.color):
            out.append(PreloadEntry(sent, source.address, source.color, False))
    elif isinstance(source, SrcOverdraft):
        # an unbounded source never reads its balance
        readable = source.bound is not None and not _has_call(source.address)
        if readable and not _has_call(source.color):
            out.append(PreloadEntry(sent, source.address, source.color, False))
    elif isinstance(source, SrcScaling):
        if not _has_call(source.address):
            out.append(PreloadEntry(sent, source.address, None, True))
    elif isinstance(source, SrcInorder | SrcOneof):
        for sub in source.sources:
            _collect_sources(sent, sub, out)
    elif isinstance(source, SrcCapped):
        _collect_sources(sent, source.source, out)
    elif isinstance(source, SrcAllotment):
        for item in source.items:
            _collect_sources(sent, item.source, out)


def _preload_plan(statements: tuple[Statement, ...]) -> tuple[PreloadEntry, ...]:
    """Every source balance whose account and asset need no function call to be known."""
    out: list[PreloadEntry] = []
    for stmt in statements:
        if isinstance(stmt, SendStmt):
            if not _sent_has_call(stmt.sent):
                _collect_sources(stmt.sent, stmt.source, out)
        elif (
            isinstance(stmt, SaveStmt)
            and not _sent_has_call(stmt.sent)
            and not _has_call(stmt.account)
        ):
            out.append(PreloadEntry(stmt.sent, stmt.account, None, False))
    return tuple(out)


def check_size(source: str, limits: lim.Limits) -> None:
    """Refuse a source above ``limits.max_script_bytes`` (UTF-8 bytes) before any work."""
    limit = limits.max_script_bytes
    if len(source) * 4 <= limit:
        return
    size = len(source.encode("utf-8", "surrogatepass"))
    if size > limit:
        raise LimitExceeded("bytes of script", limit, size)


def _number_literal(token: Token, smap: SourceMap) -> int:
    digits = token.text.replace("_", "")
    value = int(digits) if len(digits) <= lim.MAX_LITERAL_DIGITS else None
    if value is None or value > lim.MAX_AMOUNT:
        shown = digits if len(digits) <= 20 else f"a {len(digits)}-digit number"
        raise NumberOutOfRange(shown, smap.span(token.start, token.end))
    return value


def _percent_literal(token: Token, smap: SourceMap) -> Fraction:
    text = token.text[:-1]
    if len(text) > 2 * lim.MAX_LITERAL_DIGITS:
        raise NumberOutOfRange(
            f"a {len(text)}-character portion", smap.span(token.start, token.end)
        )
    value = Fraction(text) / 100
    if value.numerator > lim.MAX_AMOUNT:
        raise NumberOutOfRange(f"{text}%", smap.span(token.start, token.end))
    return value


def parse_uncached(source: str, limits: lim.Limits | None = None) -> Program:
    """Parse ``source`` into a :class:`Program`. Raises :class:`ParseError` (including
    :class:`NestingTooDeep`), :class:`LimitExceeded` or :class:`NumberOutOfRange`."""
    try:
        return Parser(source, limits).parse_program()
    except RecursionError:
        # Backstop only: max_depth keeps the parser far from the interpreter's recursion
        # limit unless it is configured absurdly high, or the caller's stack is already deep.
        raise LimitExceeded(
            "levels of nesting", (limits or lim.current()).max_depth, None
        ) from None


class ParseCache:
    """Parsed programs by (source, limits), least recently used first out, bounded by the total
    size of the cached sources (a program's syntax tree takes ~40 times its source in memory).
    A source above 1/8 of the budget is never cached: parsing it again is cheaper than
    evicting many small ones. Thread-safe."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self.bytes = 0
        self._entries: OrderedDict[tuple[str, lim.Limits], Program] = OrderedDict()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, source: str, limits: lim.Limits) -> Program:
        key = (source, limits)
        with self._lock:
            program = self._entries.get(key)
            if program is not None:
                self._entries.move_to_end(key)
                return program
        program = parse_uncached(source, limits)
        size = len(source)
        if size > self.max_bytes // 8:
            return program
        with self._lock:
            if key not in self._entries:
                self._entries[key] = program
                self.bytes += size
                while self.bytes > self.max_bytes:
                    (old_source, _), _ = self._entries.popitem(last=False)
                    self.bytes -= len(old_source)
        return program

    def resize(self, max_bytes: int) -> None:
        with self._lock:
            self.max_bytes = max_bytes
            self._entries.clear()
            self.bytes = 0


#: 1 MiB of script text by default (the ledger sets NUMSCRIPT_PARSE_CACHE_BYTES)
PARSE_CACHE = ParseCache(1024 * 1024)


def parse(source: str, limits: lim.Limits | None = None) -> Program:
    """Parse ``source`` (cached by source text and limits; programs are immutable so sharing
    is safe). ``limits`` default to :func:`ledger.numscript.limits.current`."""
    return PARSE_CACHE.get(source, limits if limits is not None else lim.current())
