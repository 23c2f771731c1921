"""Numscript interpreter: runs a parsed :class:`Program` against a :class:`Store`.

How a run goes (mirroring formancehq/numscript):

1. feature flags from ``#![feature(...)]`` are added to the caller's flags;
2. ``vars`` are evaluated top to bottom (caller strings, ``meta()``, ``balance()``, ...);
3. every statically known source balance of the whole program is fetched in **one**
   batched ``Store.get_balances`` call (``@world`` is never queried);
4. statements run in order. A ``send`` first evaluates its source tree, which pushes
   *senders* onto a FIFO funds queue (debiting tracked balances), then its destination tree,
   which pulls from the front of the queue and emits one posting per (sender chunk, receiver);
5. every posting is checked (amount, asset and account names) before the result is returned.

Work is counted in steps (expression evaluations, source and destination visits, queue pulls,
balance rows read or scanned) against ``Limits.max_steps``: a run that needs more stops with
:class:`StepBudgetExceeded` at the same point every time. A failed ``oneof`` branch is undone
from a journal of the changes it made (balances, loaded rows, queue tail, postings), so trying
N branches costs what the branches do, not N copies of the state.

Balances are tracked per (account, asset, color). A row the store has not been asked about
yet holds the *delta* applied so far; when it is finally loaded the store amount is added
(upstream Go preloads every source balance before running, so an account that is only a
destination and is read by ``balance()`` later starts at 0 there and its stored balance is
ignored; reading lazily, we count it).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any

from . import flags as ff
from . import limits as lim
from .ast import (
    AccountLit,
    AssetLit,
    DestAccount,
    DestAllotment,
    Destination,
    DestInorder,
    DestOneof,
    Expr,
    FnCall,
    FnCallStmt,
    Infix,
    Kept,
    KeptOrTo,
    MonetaryLit,
    NumberLit,
    PercentLit,
    Prefix,
    Program,
    SaveStmt,
    SendStmt,
    SentAll,
    SentValue,
    Source,
    Span,
    SrcAccount,
    SrcAllotment,
    SrcCapped,
    SrcInorder,
    SrcOneof,
    SrcOverdraft,
    SrcScaling,
    StringLit,
    To,
    VarRef,
)
from .errors import (
    BadArity,
    CannotCastToString,
    DivideByZero,
    ExperimentalFeatureNotEnabled,
    InternalError,
    InvalidAccountName,
    InvalidAllotmentInSendAll,
    InvalidAllotmentSum,
    InvalidColor,
    InvalidFeature,
    InvalidNestedMeta,
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
    NumberOutOfRange,
    NumscriptError,
    StepBudgetExceeded,
    TypeMismatch,
    UnboundFunction,
    UnboundVariable,
)
from .store import ALL_SCALES, Store, Unspeculable, base_asset
from .values import (
    is_valid_account,
    is_valid_asset,
    is_valid_color,
    parse_typed,
    scaled_asset,
    split_asset,
)
from .valuetypes import (
    ALL_TYPES,
    ONE,
    WORLD,
    ZERO,
    Account,
    Asset,
    Monetary,
    String,
    Value,
    value_to_string,
)


@dataclass(frozen=True, slots=True)
class Posting:
    source: str
    destination: str
    asset: str
    amount: int
    color: str = ""


@dataclass(frozen=True, slots=True)
class ExecutionResult:
    postings: list[Posting]
    #: transaction metadata, values already in their string form ("USD/2 7", "3/25", "42")
    tx_meta: dict[str, str] = field(default_factory=dict)
    #: account metadata written by ``set_account_meta`` (input metadata is not included)
    account_meta: dict[str, dict[str, str]] = field(default_factory=dict)


EXPRESSION_FUNCTIONS = ("meta", "balance", "overdraft", "get_asset", "get_amount")
STATEMENT_FUNCTIONS = ("set_tx_meta", "set_account_meta")
# argument type signatures; None accepts any value
FUNCTION_SIGNATURES: dict[str, tuple[str | None, ...]] = {
    "meta": ("account", "string"),
    "balance": ("account", "asset"),
    "overdraft": ("account", "asset"),
    "get_asset": ("monetary",),
    "get_amount": ("monetary",),
    "set_tx_meta": ("string", None),
    "set_account_meta": ("account", "string", None),
}
_TYPE_CLASSES: dict[str, type] = {
    "account": Account,
    "asset": Asset,
    "monetary": Monetary,
    "number": int,
    "portion": Fraction,
    "string": String,
}
_LITERALS = (NumberLit, PercentLit, StringLit, AssetLit)
_KEPT = None  # receiver marker: funds go back to their senders

BalanceKey = tuple[str, str, str]

# Variable and metadata values already parsed, by (type, text): a template runs with the same
# commission, fee or account again and again. Values are immutable; only successful parses are
# kept (an error carries its position); bounded, emptied when full.
_PARSED_VARS: dict[tuple[str, str], Value] = {}
# Allotments already checked and completed, by their portions (None: remaining): the list is
# shared, never changed. Bounded like the parsed values.
_ALLOTMENTS: dict[tuple[Fraction | None, ...], list[Fraction]] = {}
_PARSED_VARS_MAX = 4096


def _parsed(type_name: str, raw: str, span: Span) -> Value:
    """``parse_typed``, once per (type, text)."""
    parsed = _PARSED_VARS.get((type_name, raw))
    if parsed is None:
        parsed = parse_typed(type_name, raw, span)
        if len(_PARSED_VARS) >= _PARSED_VARS_MAX:
            _PARSED_VARS.clear()
        _PARSED_VARS[(type_name, raw)] = parsed
    return parsed


def completed_portions(given: tuple[Fraction | None, ...], span: Span) -> list[Fraction]:
    """An allotment's portions (each >= 0, None for `remaining`) checked and completed, once
    per set of portions (the list is shared, never changed). Raises InvalidAllotmentSum."""
    known = _ALLOTMENTS.get(given)
    if known is not None:
        return known
    values: list[Fraction] = []
    total = ZERO
    remaining_index = -1
    for index, portion in enumerate(given):
        if portion is None:
            remaining_index = index
            values.append(ZERO)
            continue
        values.append(portion)
        total += portion
    if remaining_index >= 0:
        if total > 1:
            raise InvalidAllotmentSum(total, span, remaining=True)
        values[remaining_index] = ONE - total
    elif total != 1:
        raise InvalidAllotmentSum(total, span)
    if len(_ALLOTMENTS) >= _PARSED_VARS_MAX:
        _ALLOTMENTS.clear()
    _ALLOTMENTS[given] = values
    return values


def allot(amount: int, values: list[Fraction]) -> list[int]:
    """Split ``amount`` by completed portions: each part is floor(portion x amount), then the
    leftover units go one each to the parts in the order written (not largest-remainder:
    upstream's ``makeAllotment``)."""
    parts = [amount * v.numerator // v.denominator for v in values]
    left = amount - sum(parts)
    index = 0
    while left > 0:
        parts[index] += 1
        left -= 1
        index += 1
    return parts


def run(
    program: Program,
    *,
    vars: Mapping[str, str] | None = None,
    store: Store,
    feature_flags: Collection[str] = frozenset(),
    limits: lim.Limits | None = None,
) -> ExecutionResult:
    """Run ``program``. Raises a :class:`NumscriptError` subclass on any failure (notably
    :class:`MissingFundsError`, and :class:`StepBudgetExceeded` past ``limits.max_steps``,
    default :func:`ledger.numscript.limits.current`); exceptions raised by the store propagate
    unchanged."""
    flags = frozenset(feature_flags)
    if program.flags:
        extra = set()
        for flag in program.flags:
            if flag.name not in ff.ALL_FLAGS:
                raise InvalidFeature(flag.name, flag.span)
            extra.add(flag.name)
        flags = flags | extra
    limits = limits if limits is not None else lim.current()
    try:
        return _Run(program, vars or {}, store, flags, limits.max_steps).execute()
    except RecursionError:
        # Backstop only: the parser's max_depth keeps every recursion far below the limit.
        raise LimitExceeded("levels of nesting", limits.max_depth, None) from None


def find_scaling_solution(
    needed: int | None, scale: int, scales: Mapping[int, int]
) -> tuple[list[tuple[int, int]], int]:
    """Which amounts held at other scales to convert into ``scale`` (``with scaling through``:
    only whole amounts with no remainder are converted).

    Returns ``([(from_scale, amount_in_from_scale), ...], total_in_target_scale)``. Scales are
    visited from the finest to the coarsest; only whole target units are produced, and no
    more than ``needed`` (minus what is already held at ``scale``) unless ``needed`` is None
    (send all). Non-positive holdings are never converted.
    """
    if needed is not None and scale in scales:
        needed -= scales[scale]
    out: list[tuple[int, int]] = []
    total = 0
    for s in sorted(scales, reverse=True):
        if s == scale:
            continue
        if needed is not None and total >= needed:
            break
        amount = scales[s]
        if amount <= 0:
            continue
        # factor = 10 ** (scale - s) = num / den
        if scale >= s:
            num, den = 10 ** (scale - s), 1
        else:
            num, den = 1, 10 ** (s - scale)
        available = amount * num // den
        taken = available if needed is None else min(available, needed - total)
        if taken <= 0:
            continue
        source_units = -((-taken * den) // num)  # ceil(taken / factor)
        total += source_units * num // den
        out.append((s, source_units))
    return out, total


_MISSING = object()  # journal marker: the balance row did not exist
# journal entry kinds (see _Run.journal)
_J_BALANCE, _J_LOADED, _J_WILD = 0, 1, 2


class _Run:
    __slots__ = (
        "account_meta",
        "asset",
        "balances",
        "flags",
        "in_origin",
        "inputs",
        "journal",
        "loaded",
        "max_steps",
        "meta_cache",
        "postings",
        "program",
        "queue",
        "speculative",
        "statement_span",
        "steps",
        "store",
        "tx_meta",
        "vars",
        "wild",
    )

    def __init__(
        self,
        program: Program,
        inputs: Mapping[str, str],
        store: Store,
        flags: frozenset[str],
        max_steps: int,
    ) -> None:
        self.program = program
        self.inputs = inputs
        self.store = store
        # a speculative store answers 0 for every balance: see ledger.numscript.store
        self.speculative = getattr(store, "speculative", False) is True
        self.flags = flags
        self.vars: dict[str, Value] = {}
        self.balances: dict[BalanceKey, int] = {}
        self.loaded: set[BalanceKey] = set()
        self.wild: set[tuple[str, str]] = set()  # (account, base asset) loaded at all scales
        self.queue: deque[list[Any]] = deque()  # [account, color, amount]
        self.postings: list[Posting] = []
        self.tx_meta: dict[str, Value] = {}
        self.account_meta: dict[str, dict[str, str]] = {}
        self.meta_cache: dict[str, dict[str, str]] = {}
        self.asset = Asset("")
        self.in_origin = False
        self.steps = 0
        self.max_steps = max_steps
        self.statement_span: Span | None = None
        # While a `oneof` branch runs: every change to balances/loaded/wild, so that a failed
        # branch is undone in time proportional to what it did (not to the whole state).
        # Entries: (_J_BALANCE, key, old value or _MISSING), (_J_LOADED, key, None),
        # (_J_WILD, key, None). None when no branch is running.
        self.journal: list[tuple[int, Any, Any]] | None = None

    # --- driver ----------------------------------------------------------------------

    def execute(self) -> ExecutionResult:
        self._parse_vars()
        self._preload()
        marks: list[tuple[int, Span]] = []
        for stmt in self.program.statements:
            self.statement_span = stmt.span
            if type(stmt) is SendStmt:
                self._send(stmt)
            elif type(stmt) is SaveStmt:
                self._save(stmt)
            else:
                assert isinstance(stmt, FnCallStmt)
                self._call_statement(stmt.call)
            marks.append((len(self.postings), stmt.span))
        self._check_postings(marks)
        tx_meta = {key: value_to_string(value) for key, value in self.tx_meta.items()}
        return ExecutionResult(self.postings, tx_meta, self.account_meta)

    def _tick(self, steps: int = 1) -> None:
        """Count work; past the budget the run stops (deterministically) with an error."""
        self.steps += steps
        if self.steps > self.max_steps:
            raise StepBudgetExceeded(self.max_steps, self.statement_span)

    def _set_balance(self, key: BalanceKey, value: int) -> None:
        journal = self.journal
        if journal is not None:
            journal.append((_J_BALANCE, key, self.balances.get(key, _MISSING)))
        self.balances[key] = value

    def _mark_loaded(self, key: BalanceKey) -> None:
        self.loaded.add(key)
        if self.journal is not None:
            self.journal.append((_J_LOADED, key, None))

    def _rollback(self, mark: int, queue_len: int, queue_last: int | None, postings: int) -> None:
        """Undo a failed `oneof` branch: journal entries after ``mark`` in reverse order, the
        senders it pushed (sources only ever append to the queue or grow its last entry) and
        the postings it emitted (asset-scaling conversions)."""
        journal = self.journal
        assert journal is not None
        balances = self.balances
        while len(journal) > mark:
            kind, key, old = journal.pop()
            if kind == _J_BALANCE:
                if old is _MISSING:
                    del balances[key]
                else:
                    balances[key] = old
            elif kind == _J_LOADED:
                self.loaded.discard(key)
            else:
                self.wild.discard(key)
        queue = self.queue
        while len(queue) > queue_len:
            queue.pop()
        if queue_last is not None:
            queue[-1][2] = queue_last
        del self.postings[postings:]

    def _require(self, flag: str, span: Span) -> None:
        if flag not in self.flags:
            raise ExperimentalFeatureNotEnabled(flag, span)

    def _parse_vars(self) -> None:
        inputs = self.inputs
        self.in_origin = True
        for decl in self.program.vars:
            self.statement_span = decl.span  # where a spent step budget is reported
            if decl.type_name not in ALL_TYPES:
                raise InvalidType(decl.type_name, decl.type_span)
            origin = decl.origin
            value: Value
            if origin is None:
                raw = inputs.get(decl.name)
                if raw is None:
                    raise MissingVariable(decl.name, decl.type_name, decl.name_span)
                if not isinstance(raw, str):
                    raise InvalidVariableValue(
                        f"invalid value for ${decl.name}: expected a string, found "
                        f"{type(raw).__name__} {raw!r}",
                        decl.name_span,
                    )
                value = _parsed(decl.type_name, raw, decl.name_span)
            elif type(origin) is FnCall:
                value = self._call_expr(origin, decl.type_name)
            else:
                self._require(ff.MID_SCRIPT_FUNCTION_CALL, origin.span)
                value = self._eval(origin)
            self.vars[decl.name] = value
        self.in_origin = False

    # --- balances --------------------------------------------------------------------

    def _static(self, expr: Expr) -> Value | None:
        """Evaluate a call-free expression for the preload, or None if it fails."""
        try:
            return self._eval(expr)
        except LimitExceeded:
            raise  # the step budget is spent: stop, do not guess on
        except NumscriptError:
            return None

    def _preload(self) -> None:
        plan = self.program.preload
        if not plan:
            return
        query: dict[str, list[tuple[str, str]]] = {}
        flags = self.flags
        static = self._static
        for entry in plan:
            sent = entry.sent
            if isinstance(sent, SentAll):
                asset = static(sent.asset)
            else:
                monetary = static(sent)
                asset = monetary.asset if type(monetary) is Monetary else None
            if type(asset) is not Asset:
                continue
            account = static(entry.account)
            if type(account) is not Account or account == WORLD:
                continue
            if entry.all_scales:
                if ff.ASSET_SCALING not in flags:
                    continue
                base = base_asset(asset)
                if (account, base) in self.wild:
                    continue
                wanted = (base + ALL_SCALES, "")
            else:
                color = ""
                if entry.color is not None:
                    if ff.ASSET_COLORS not in flags:
                        continue
                    color_value = static(entry.color)
                    if type(color_value) is not String or not is_valid_color(color_value):
                        continue
                    color = color_value
                if (account, asset, color) in self.loaded:
                    continue
                wanted = (asset, color)
            keys = query.setdefault(account, [])
            if wanted not in keys:
                keys.append(wanted)
        if query:
            self._load(query)

    def _load(self, query: dict[str, list[tuple[str, str]]]) -> None:
        answer = self.store.get_balances(query)
        balances = self.balances
        loaded = self.loaded
        for account, keys in query.items():
            rows = answer.get(account) or {}
            self._tick(len(keys) + len(rows))
            for asset, color in keys:
                if asset.endswith(ALL_SCALES):
                    base = asset[: -len(ALL_SCALES)]
                    for (row_asset, row_color), amount in rows.items():
                        key = (account, row_asset, row_color)
                        if row_color == "" and base_asset(row_asset) == base and key not in loaded:
                            self._set_balance(key, balances.get(key, 0) + amount)
                            self._mark_loaded(key)
                    if (account, base) not in self.wild:
                        self.wild.add((account, base))
                        if self.journal is not None:
                            self.journal.append((_J_WILD, (account, base), None))
                else:
                    key = (account, asset, color)
                    if key not in loaded:
                        self._set_balance(key, balances.get(key, 0) + rows.get((asset, color), 0))
                        self._mark_loaded(key)

    def _balance(self, account: str, asset: str, color: str, *, decides: bool = True) -> int:
        """The balance as the run stands. ``decides``: the caller acts on its exact value,
        which a speculative run does not know (only `_take_from_account` does not)."""
        if decides and self.speculative:
            raise Unspeculable(f"the exact balance of {account} in {asset}")
        key = (account, asset, color)
        if key not in self.loaded and account != WORLD:
            if color == "" and (account, base_asset(asset)) in self.wild:
                self._mark_loaded(key)
            else:
                self._load({account: [(asset, color)]})
        return self.balances.get(key, 0)

    def _metadata(self, account: str) -> dict[str, str]:
        cached = self.meta_cache.get(account)
        if cached is None:
            cached = self.store.get_account_metadata([account]).get(account) or {}
            self.meta_cache[account] = cached
        return cached

    # --- expressions -----------------------------------------------------------------

    def _eval(self, expr: Expr) -> Value:
        self.steps += 1
        if self.steps > self.max_steps:
            raise StepBudgetExceeded(self.max_steps, self.statement_span)
        return _EVAL[type(expr)](self, expr)

    def _eval_var(self, expr: VarRef) -> Value:
        try:
            return self.vars[expr.name]
        except KeyError:
            raise UnboundVariable(expr.name, expr.span) from None

    def _eval_literal(self, expr: NumberLit | PercentLit | StringLit | AssetLit) -> Value:
        return expr.value

    def _eval_account(self, expr: AccountLit) -> Value:
        if expr.value is not None:
            return expr.value
        self._require(ff.ACCOUNT_INTERPOLATION, expr.span)
        pieces: list[str] = []
        for part in expr.parts:
            if isinstance(part, str):
                pieces.append(part)
                continue
            value = self._eval_var(part)
            t = type(value)
            if t is int or t is String or t is Account:
                pieces.append(str(value))
            else:
                raise CannotCastToString(value, expr.span)
        name = ":".join(pieces)
        if not is_valid_account(name):
            raise InvalidAccountName(name, expr.span)
        return Account(name)

    def _eval_monetary(self, expr: MonetaryLit) -> Value:
        asset = self._eval(expr.asset)
        if type(asset) is not Asset:
            raise TypeMismatch("asset", asset, expr.asset.span)
        amount = self._eval(expr.amount)
        if type(amount) is not int:
            raise TypeMismatch("number", amount, expr.amount.span)
        return Monetary(asset, amount)

    def _eval_prefix(self, expr: Prefix) -> Value:
        value = self._eval(expr.operand)
        if type(value) is int:
            return -value
        if type(value) is Monetary:
            return Monetary(value.asset, -value.amount)
        raise TypeMismatch("monetary|number", value, expr.operand.span)

    @staticmethod
    def _in_range(amount: int, span: Span) -> int:
        if -lim.MAX_AMOUNT <= amount <= lim.MAX_AMOUNT:
            return amount
        raise NumberOutOfRange(f"{amount.bit_length()}-bit result", span)

    def _eval_infix(self, expr: Infix) -> Value:
        left = self._eval(expr.left)
        op = expr.op
        if op == "/":
            if type(left) is not int:
                raise TypeMismatch("number", left, expr.left.span)
            right = self._eval(expr.right)
            if type(right) is not int:
                raise TypeMismatch("number", right, expr.right.span)
            if right == 0:
                raise DivideByZero(left, expr.span)
            return Fraction(left, right)
        if type(left) is Monetary:
            right = self._eval(expr.right)
            if type(right) is not Monetary:
                raise TypeMismatch("monetary", right, expr.right.span)
            if right.asset != left.asset:
                raise MismatchedCurrency(left.asset, right.asset, expr.right.span)
            amount = left.amount + right.amount if op == "+" else left.amount - right.amount
            return Monetary(left.asset, self._in_range(amount, expr.span))
        if type(left) is int:
            right = self._eval(expr.right)
            if type(right) is not int:
                raise TypeMismatch("number", right, expr.right.span)
            return self._in_range(left + right if op == "+" else left - right, expr.span)
        raise TypeMismatch("monetary|number", left, expr.left.span)

    def _eval_call(self, expr: FnCall) -> Value:
        if not self.in_origin:
            self._require(ff.MID_SCRIPT_FUNCTION_CALL, expr.span)
        return self._call_expr(expr, None)

    def _cap(self, expr: Expr) -> int:
        """A monetary of the current asset (caps, overdraft bounds); returns its amount."""
        value = self._eval(expr)
        if type(value) is not Monetary:
            raise TypeMismatch("monetary", value, expr.span)
        if value.asset != self.asset:
            raise MismatchedCurrency(self.asset, value.asset, expr.span)
        return value.amount

    def _account(self, expr: Expr) -> Account:
        value = self._eval(expr)
        if type(value) is not Account:
            raise TypeMismatch("account", value, expr.span)
        return value

    def _color(self, expr: Expr | None) -> str:
        if expr is None:
            return ""
        value = self._eval(expr)
        if type(value) is not String:
            raise TypeMismatch("string", value, expr.span)
        if not is_valid_color(value):
            raise InvalidColor(value, expr.span)
        return value

    # --- function calls --------------------------------------------------------------

    def _args(self, call: FnCall, values: list[Value]) -> list[Any]:
        signature = FUNCTION_SIGNATURES[call.name]
        for index, (expected, value) in enumerate(zip(signature, values, strict=False)):
            if expected is not None and type(value) is not _TYPE_CLASSES[expected]:
                raise TypeMismatch(expected, value, call.args[index].span)
        if len(values) != len(signature):
            raise BadArity(call.name, len(signature), len(values), call.span)
        return values

    def _call_expr(self, call: FnCall, declared_type: str | None) -> Value:
        values = [self._eval(arg) for arg in call.args]
        name = call.name
        if name == "meta":
            if declared_type is None:
                raise InvalidNestedMeta(call.span)
            account, key = self._args(call, values)
            metadata = self._metadata(account)
            raw = metadata.get(key)
            if raw is None:
                raise MetadataNotFound(account, key, call.span)
            return _parsed(declared_type, raw, call.span)
        if name == "balance":
            account, asset = self._args(call, values)
            amount = self._balance(account, asset, "")
            if amount < 0:
                raise NegativeBalanceError(account, asset, amount, call.span)
            return Monetary(asset, self._in_range(amount, call.span))
        if name == "overdraft":
            self._require(ff.OVERDRAFT_FUNCTION, call.span)
            account, asset = self._args(call, values)
            amount = self._balance(account, asset, "")
            return Monetary(asset, self._in_range(-amount if amount < 0 else 0, call.span))
        if name == "get_asset":
            self._require(ff.GET_ASSET_FUNCTION, call.span)
            (monetary,) = self._args(call, values)
            return monetary.asset  # type: ignore[no-any-return]
        if name == "get_amount":
            self._require(ff.GET_AMOUNT_FUNCTION, call.span)
            (monetary,) = self._args(call, values)
            return monetary.amount  # type: ignore[no-any-return]
        raise UnboundFunction(
            name, "one of " + ", ".join(f"{f}()" for f in EXPRESSION_FUNCTIONS), call.name_span
        )

    def _call_statement(self, call: FnCall) -> None:
        values = [self._eval(arg) for arg in call.args]
        if call.name == "set_tx_meta":
            key, value = self._args(call, values)
            self.tx_meta[str(key)] = value
        elif call.name == "set_account_meta":
            account, key, value = self._args(call, values)
            self.account_meta.setdefault(str(account), {})[str(key)] = value_to_string(value)
        else:
            raise UnboundFunction(
                call.name, "set_tx_meta() or set_account_meta() as a statement", call.name_span
            )

    # --- statements ------------------------------------------------------------------

    def _send(self, stmt: SendStmt) -> None:
        sent = stmt.sent
        if type(sent) is SentAll:
            asset = self._eval(sent.asset)
            if type(asset) is not Asset:
                raise TypeMismatch("asset", asset, sent.asset.span)
            self.asset = asset
            if self.speculative and self._deferred_drain(stmt):
                return
            total = _TAKE_ALL[type(stmt.source)](self, stmt.source)
            _SEND_TO[type(stmt.destination)](self, stmt.destination, total)
            return
        assert not isinstance(sent, SentAll)
        monetary = self._eval(sent)
        if type(monetary) is not Monetary:
            raise TypeMismatch("monetary", monetary, sent.span)
        self.asset = monetary.asset
        amount = monetary.amount
        if amount < 0:
            raise NegativeAmountError(monetary.asset, amount, sent.span)
        self._take_exact(stmt.source, amount)
        _SEND_TO[type(stmt.destination)](self, stmt.destination, amount)

    def _deferred_drain(self, stmt: SendStmt) -> bool:
        """A speculative run's last statement, ``send [A *]`` from one account (no overdraft
        clause, no color) to an account or an allotment of accounts, when the store takes
        drains (``drain(key, held, parts)``, see ledger.numscript.store): the run hands it to
        the store instead of deciding on the exact balance, and the write takes the locked
        balance plus ``held`` (what the run moved in and out of it before) and splits it by
        the portions, exactly as below. False: not of that shape (the run goes on as usual)."""
        drain = getattr(self.store, "drain", None)
        source = stmt.source
        if (
            drain is None
            or stmt is not self.program.statements[-1]
            or type(source) is not SrcAccount
            or source.color is not None
        ):
            return False
        destination = stmt.destination
        targets: list[Expr] = []
        if type(destination) is DestAccount:
            portions: list[Fraction] = [ONE]
            targets.append(destination.address)
        elif type(destination) is DestAllotment:
            for item in destination.items:
                target = item.target
                if type(target) is not To or type(target.destination) is not DestAccount:
                    return False
                targets.append(target.destination.address)
            portions = self._portions(
                [item.portion for item in destination.items], destination.span
            )
        else:
            return False
        account = self._account(source.address)
        addresses = [self._account(target) for target in targets]
        if account == WORLD or account in addresses:
            return False
        # the steps the ordinary run counts: the sender, then one per part (none is empty:
        # the write leaves a run with an empty part to the ordinary way)
        self._tick(1 + len(portions))
        key = (account, self.asset, "")
        drain(key, self.balances.get(key, 0), list(zip(portions, addresses, strict=True)))
        return True

    def _save(self, stmt: SaveStmt) -> None:
        sent = stmt.sent
        amount: int | None
        if type(sent) is SentAll:
            asset = self._eval(sent.asset)
            if type(asset) is not Asset:
                raise TypeMismatch("asset", asset, sent.asset.span)
            amount = None
        else:
            assert not isinstance(sent, SentAll)
            monetary = self._eval(sent)
            if type(monetary) is not Monetary:
                raise TypeMismatch("monetary", monetary, sent.span)
            asset, amount = monetary.asset, monetary.amount
        account = self._account(stmt.account)
        balance = self._balance(account, asset, "")
        key = (account, asset, "")
        if amount is None:
            # save everything: only a positive balance is set aside
            if balance > 0:
                self.balances[key] = 0
            return
        if amount < 0:
            raise NegativeAmountError(asset, amount, sent.span)
        # quirk kept from upstream: a negative balance is reset to 0 as well
        self.balances[key] = max(0, balance - amount)

    # --- funds queue -----------------------------------------------------------------

    def _push_sender(self, account: str, amount: int, color: str) -> None:
        self._tick()
        if amount == 0:
            return
        key = (account, self.asset, color)
        self._set_balance(key, self.balances.get(key, 0) - amount)
        queue = self.queue
        if queue:
            last = queue[-1]
            if last[0] == account and last[1] == color:
                last[2] += amount
                return
        queue.append([account, color, amount])

    def _push_receiver(self, destination: str | None, amount: int) -> None:
        """Pull ``amount`` from the front of the queue and credit ``destination`` (``None``:
        kept, i.e. credited back to each sender)."""
        if amount <= 0:
            return
        queue = self.queue
        balances = self.balances
        asset = self.asset
        postings = self.postings
        # postings expose plain str (not our Account/Asset subclasses) to callers
        plain_asset = str(asset)
        plain_destination = str(destination) if destination is not None else ""
        while amount > 0 and queue:
            self._tick()
            front = queue[0]
            chunk = front[2]
            if chunk <= amount:
                queue.popleft()
            else:
                front[2] = chunk - amount
                chunk = amount
            amount -= chunk
            sender, color = front[0], front[1]
            if destination is None:
                key = (sender, asset, color)
            else:
                key = (destination, asset, color)
                postings.append(Posting(str(sender), plain_destination, plain_asset, chunk, color))
            balances[key] = balances.get(key, 0) + chunk

    def _force_posting(self, source: str, destination: str, amount: int, asset: str) -> None:
        """An uncolored posting outside the queue (asset-scaling conversions)."""
        if amount == 0:
            return
        balances = self.balances
        self._set_balance((source, asset, ""), balances.get((source, asset, ""), 0) - amount)
        self._set_balance(
            (destination, asset, ""), balances.get((destination, asset, ""), 0) + amount
        )
        self.postings.append(Posting(str(source), str(destination), str(asset), amount))

    # --- sources ---------------------------------------------------------------------

    def _take_exact(self, source: Source, amount: int) -> None:
        got = _TAKE_UP_TO[type(source)](self, source, amount)
        if got != amount:
            raise MissingFundsError(
                asset=self.asset,
                needed=amount,
                available=got,
                account=self._single_account(source),
                span=source.span,
            )

    def _single_account(self, source: Source) -> str | None:
        if isinstance(source, SrcAccount | SrcOverdraft | SrcScaling):
            value = self._static(source.address)
            if type(value) is Account:
                return str(value)
        return None

    def _take_from_account(
        self, address: Expr, color_expr: Expr | None, amount: int, overdraft: int | None
    ) -> int:
        """Take up to ``amount``; ``overdraft`` None means unbounded."""
        if color_expr is not None:
            self._require(ff.ASSET_COLORS, color_expr.span)
        account = self._account(address)
        if account == WORLD:
            overdraft = None
        color = self._color(color_expr)
        if overdraft is None:
            sent = amount
        elif self.speculative:
            # taken in full if the stored balance (answered as 0: what the run holds is what
            # the script moved) is at least amount - overdraft - held: the caller checks it
            held = self._balance(account, self.asset, color, decides=False)
            if amount > 0:
                self.store.require(  # type: ignore[attr-defined]
                    (account, self.asset, color), amount - overdraft - held
                )
            sent = amount
        else:
            safe = self._balance(account, self.asset, color) + overdraft
            sent = amount if amount < safe else (safe if safe > 0 else 0)
        self._push_sender(account, sent, color)
        return sent

    def _up_to_account(self, source: SrcAccount, amount: int) -> int:
        return self._take_from_account(source.address, source.color, max(amount, 0), 0)

    def _up_to_overdraft(self, source: SrcOverdraft, amount: int) -> int:
        overdraft = None
        if source.bound is not None:
            overdraft = max(self._cap(source.bound), 0)
        return self._take_from_account(source.address, source.color, max(amount, 0), overdraft)

    def _up_to_inorder(self, source: SrcInorder, amount: int) -> int:
        amount = max(amount, 0)
        left = amount
        for sub in source.sources:
            self._tick()
            # like upstream, later sources are still evaluated once nothing is left
            left -= _TAKE_UP_TO[type(sub)](self, sub, left)
        return amount - left

    def _up_to_oneof(self, source: SrcOneof, amount: int) -> int:
        self._require(ff.ONEOF, source.span)
        amount = max(amount, 0)
        *leading, last = source.sources
        outer = self.journal
        journal = self.journal = outer if outer is not None else []
        queue = self.queue
        for sub in leading:
            self._tick()
            mark = len(journal)
            queue_len = len(queue)
            queue_last = queue[-1][2] if queue else None
            postings = len(self.postings)
            if _TAKE_UP_TO[type(sub)](self, sub, amount) == amount:
                self.journal = outer  # an enclosing branch may still undo this one
                return amount
            self._rollback(mark, queue_len, queue_last, postings)
        self.journal = outer
        return _TAKE_UP_TO[type(last)](self, last, amount)

    def _up_to_capped(self, source: SrcCapped, amount: int) -> int:
        cap = self._cap(source.cap)
        limit = max(0, min(amount, cap))
        return _TAKE_UP_TO[type(source.source)](self, source.source, limit)

    def _up_to_allotment(self, source: SrcAllotment, amount: int) -> int:
        amount = max(amount, 0)
        parts = self._allot(amount, [item.portion for item in source.items], source.span)
        for item, part in zip(source.items, parts, strict=True):
            self._take_exact(item.source, part)
        return amount

    def _scale(self, source: SrcScaling, needed: int | None) -> None:
        """Emit the conversion postings of a ``with scaling through`` source."""
        self._require(ff.ASSET_SCALING, source.span)
        account = self._account(source.address)
        through = self._account(source.through)
        if account == WORLD:
            raise InvalidUnboundedAddressInScalingAddress(account, source.span)
        base, scale = split_asset(self.asset)
        if (account, base) not in self.wild:
            self._load({account: [(base + ALL_SCALES, "")]})
        scales: dict[int, int] = {}
        self._tick(len(self.balances))
        for (row_account, row_asset, row_color), amount in self.balances.items():
            if row_account == account and row_color == "" and base_asset(row_asset) == base:
                row_base, row_scale = split_asset(row_asset)
                # only canonical spellings ("EUR", "EUR/2"; not "EUR/0" or "EURO")
                if row_base == base and scaled_asset(base, row_scale) == row_asset:
                    scales[row_scale] = amount
        solution, total = find_scaling_solution(needed, scale, scales)
        for from_scale, amount in solution:
            self._force_posting(account, through, amount, scaled_asset(base, from_scale))
        self._force_posting(through, account, total, self.asset)

    def _up_to_scaling(self, source: SrcScaling, amount: int) -> int:
        amount = max(amount, 0)
        self._scale(source, amount)
        return self._take_from_account(source.address, None, amount, 0)

    # --- send all ([ASSET *]) --------------------------------------------------------

    def _take_all_from_account(
        self, address: Expr, color_expr: Expr | None, overdraft: int | None, span: Span
    ) -> int:
        if color_expr is not None:
            self._require(ff.ASSET_COLORS, color_expr.span)
        account = self._account(address)
        if account == WORLD or overdraft is None:
            raise InvalidUnboundedInSendAll(account, span)
        color = self._color(color_expr)
        sent = self._balance(account, self.asset, color) + overdraft
        if sent < 0:
            sent = 0
        self._push_sender(account, sent, color)
        return sent

    def _all_account(self, source: SrcAccount) -> int:
        return self._take_all_from_account(source.address, source.color, 0, source.span)

    def _all_overdraft(self, source: SrcOverdraft) -> int:
        overdraft = None
        if source.bound is not None:
            overdraft = max(self._cap(source.bound), 0)
        return self._take_all_from_account(source.address, source.color, overdraft, source.span)

    def _all_scaling(self, source: SrcScaling) -> int:
        self._scale(source, None)
        return self._take_all_from_account(source.address, None, 0, source.span)

    def _all_inorder(self, source: SrcInorder) -> int:
        self._tick(len(source.sources))
        return sum(_TAKE_ALL[type(sub)](self, sub) for sub in source.sources)

    def _all_oneof(self, source: SrcOneof) -> int:
        self._require(ff.ONEOF, source.span)
        first = source.sources[0]
        return _TAKE_ALL[type(first)](self, first)

    def _all_capped(self, source: SrcCapped) -> int:
        cap = max(self._cap(source.cap), 0)
        return _TAKE_UP_TO[type(source.source)](self, source.source, cap)

    def _all_allotment(self, source: SrcAllotment) -> int:
        raise InvalidAllotmentInSendAll(source.span)

    # --- destinations ----------------------------------------------------------------

    def _allot(self, amount: int, portions: list[Expr | None], span: Span) -> list[int]:
        """Split ``amount`` by the portions (None = remaining): see ``allot``."""
        return allot(amount, self._portions(portions, span))

    def _portions(self, portions: list[Expr | None], span: Span) -> list[Fraction]:
        """The allotment's portions evaluated, ``remaining`` as what the others leave."""
        self._tick(len(portions))
        given: list[Fraction | None] = []
        for expr in portions:
            if expr is None:
                given.append(None)
                continue
            value = self._eval(expr)
            if type(value) is not Fraction:
                raise TypeMismatch("portion", value, expr.span)
            if value < 0:
                raise NegativePortion(value, expr.span)
            given.append(value)
        return completed_portions(tuple(given), span)

    def _kept_or_to(self, target: KeptOrTo, amount: int) -> None:
        if type(target) is Kept:
            self._push_receiver(_KEPT, amount)
        else:
            assert not isinstance(target, Kept)
            destination = target.destination
            _SEND_TO[type(destination)](self, destination, amount)

    def _to_account(self, destination: DestAccount, amount: int) -> None:
        self._push_receiver(self._account(destination.address), amount)

    def _to_allotment(self, destination: DestAllotment, amount: int) -> None:
        items = destination.items
        parts = self._allot(amount, [item.portion for item in items], destination.span)
        for item, part in zip(items, parts, strict=True):
            self._kept_or_to(item.target, part)

    def _to_inorder(self, destination: DestInorder, amount: int) -> None:
        left = amount
        for clause in destination.clauses:
            self._tick()
            if left == 0:
                break
            share = max(0, min(self._cap(clause.cap), left))
            if share != 0:
                self._kept_or_to(clause.target, share)
                left -= share
        if left != 0:
            self._kept_or_to(destination.remaining, left)

    def _to_oneof(self, destination: DestOneof, amount: int) -> None:
        self._require(ff.ONEOF, destination.span)
        for clause in destination.clauses:
            self._tick()
            if self._cap(clause.cap) >= amount:
                self._kept_or_to(clause.target, amount)
                return
        self._kept_or_to(destination.remaining, amount)

    # --- final checks ----------------------------------------------------------------

    def _check_postings(self, marks: list[tuple[int, Span]]) -> None:
        for index, posting in enumerate(self.postings):
            problem = None
            if posting.amount < 0:
                problem = f"negative amount {posting.amount}"
            elif not is_valid_asset(posting.asset):
                problem = f"invalid asset '{posting.asset}'"
            elif not is_valid_account(posting.source):
                problem = f"invalid source account '{posting.source}'"
            elif not is_valid_account(posting.destination):
                problem = f"invalid destination account '{posting.destination}'"
            if problem is not None:
                span = next((s for end, s in marks if index < end), None)
                raise InternalError(problem, span)


_EVAL: dict[type, Callable[[_Run, Any], Value]] = {
    VarRef: _Run._eval_var,
    AccountLit: _Run._eval_account,
    NumberLit: _Run._eval_literal,
    PercentLit: _Run._eval_literal,
    StringLit: _Run._eval_literal,
    AssetLit: _Run._eval_literal,
    MonetaryLit: _Run._eval_monetary,
    Infix: _Run._eval_infix,
    Prefix: _Run._eval_prefix,
    FnCall: _Run._eval_call,
}
_TAKE_UP_TO: dict[type, Callable[[_Run, Any, int], int]] = {
    SrcAccount: _Run._up_to_account,
    SrcOverdraft: _Run._up_to_overdraft,
    SrcInorder: _Run._up_to_inorder,
    SrcOneof: _Run._up_to_oneof,
    SrcCapped: _Run._up_to_capped,
    SrcAllotment: _Run._up_to_allotment,
    SrcScaling: _Run._up_to_scaling,
}
_TAKE_ALL: dict[type, Callable[[_Run, Any], int]] = {
    SrcAccount: _Run._all_account,
    SrcOverdraft: _Run._all_overdraft,
    SrcInorder: _Run._all_inorder,
    SrcOneof: _Run._all_oneof,
    SrcCapped: _Run._all_capped,
    SrcAllotment: _Run._all_allotment,
    SrcScaling: _Run._all_scaling,
}
_SEND_TO: dict[type, Callable[[_Run, Any, int], None]] = {
    DestAccount: _Run._to_account,
    DestAllotment: _Run._to_allotment,
    DestInorder: _Run._to_inorder,
    DestOneof: _Run._to_oneof,
}

__all__ = [
    "EXPRESSION_FUNCTIONS",
    "FUNCTION_SIGNATURES",
    "STATEMENT_FUNCTIONS",
    "Destination",
    "ExecutionResult",
    "Posting",
    "SentValue",
    "find_scaling_solution",
    "run",
]
