"""The ``*.num.specs.json`` conformance runner (upstream's spec format), as pure functions
over data.

:func:`check_specs` judges one script against one spec document; :func:`run_spec_file` and
:func:`find_spec_files` add the file-system plumbing used by ``numscript test``.

Judging rules, as upstream's ``specs_format.Check``:

* inputs are merged case-over-file (balances by (account, asset, color), variables by name,
  metadata per account then per key); a duplicate balance row within one list, invalid JSON,
  an empty ``testCases`` list or a parse error fails the whole file;
* ``skip`` skips a case; when any case has ``focus``, every unfocused case is skipped;
* a ``MissingFundsError`` (``NegativeAmountError``) passes only if
  ``expect.error.missingFunds`` (``expect.error.negativeAmount``) is true, and then no other
  assertion is checked; **any other error aborts the whole file**;
* on success every ``expect.*`` key present (and not null) is checked.
"""

from __future__ import annotations

import difflib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import MissingFundsError, NegativeAmountError, NumscriptError
from .interpreter import ExecutionResult, Posting, run
from .parser import parse
from .store import StaticStore

SPEC_SUFFIX = ".num.specs.json"

BalanceKey = tuple[str, str, str]


class SpecFormatError(ValueError):
    """The spec (or inputs) JSON does not have the expected shape."""


@dataclass(frozen=True, slots=True)
class AssertionFailure:
    assertion: str
    expected: Any  # JSON-ready
    got: Any  # JSON-ready


@dataclass(frozen=True, slots=True)
class CaseResult:
    it: str
    status: str  # "pass" | "fail" | "skip"
    balances: list[dict[str, Any]] = field(default_factory=list)
    variables: dict[str, str] = field(default_factory=dict)
    metadata: dict[str, dict[str, str]] = field(default_factory=dict)
    postings: list[Posting] | None = None
    failures: tuple[AssertionFailure, ...] = ()

    @property
    def passed(self) -> bool:
        return self.status == "pass"


@dataclass(frozen=True, slots=True)
class SpecFileResult:
    spec_path: str
    script_path: str
    cases: tuple[CaseResult, ...] = ()
    #: file-level failure (already rendered); the file's cases then count as failed
    error: str | None = None
    #: how many cases the file declares (known even when ``error`` is set, if the JSON parsed)
    declared_cases: int = 0

    @property
    def passed(self) -> int:
        return 0 if self.error else sum(c.status == "pass" for c in self.cases)

    @property
    def failed(self) -> int:
        if self.error:
            return max(self.declared_cases, 1)
        return sum(c.status == "fail" for c in self.cases)

    @property
    def skipped(self) -> int:
        return 0 if self.error else sum(c.status == "skip" for c in self.cases)


# --- JSON shape checks -------------------------------------------------------------------


def _is_int(value: object) -> bool:
    return type(value) is int  # bool is not an amount


def _str_map(value: object, where: str) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in value.items()
    ):
        raise SpecFormatError(f"{where}: expected an object of strings")
    return dict(value)


def _meta_map(value: object, where: str) -> dict[str, dict[str, str]]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise SpecFormatError(f"{where}: expected an object of objects of strings")
    return {account: _str_map(keys, f"{where}.{account}") for account, keys in value.items()}


def _balance_rows(value: object, where: str) -> dict[BalanceKey, int]:
    """Balance rows as an insertion-ordered dict; duplicates are an error."""
    if value is None:
        return {}
    if not isinstance(value, list):
        raise SpecFormatError(f"{where}: expected a list of balance rows")
    out: dict[BalanceKey, int] = {}
    for index, row in enumerate(value):
        key, amount = _balance_row(row, f"{where}[{index}]")
        if key in out:
            color = f' color="{key[2]}"' if key[2] else ""
            raise SpecFormatError(
                "balances must not contain duplicate entries: duplicate entry for "
                f'account="{key[0]}" asset="{key[1]}"{color}'
            )
        out[key] = amount
    return out


def _balance_row(row: object, where: str) -> tuple[BalanceKey, int]:
    if not isinstance(row, dict):
        raise SpecFormatError(f"{where}: expected an object")
    account, asset, amount = row.get("account"), row.get("asset"), row.get("amount")
    color = row.get("color") or ""
    if not isinstance(account, str) or not isinstance(asset, str) or not isinstance(color, str):
        raise SpecFormatError(f"{where}: expected string 'account', 'asset' and 'color'")
    if not _is_int(amount):
        raise SpecFormatError(f"{where}: expected an integer 'amount', found {amount!r}")
    assert isinstance(amount, int)
    return (account, asset, color), amount


def _posting_rows(value: object, where: str) -> list[tuple[str, str, str, int, str]]:
    if not isinstance(value, list):
        raise SpecFormatError(f"{where}: expected a list of postings")
    out = []
    for index, row in enumerate(value):
        if not isinstance(row, dict):
            raise SpecFormatError(f"{where}[{index}]: expected an object")
        source, destination = row.get("source"), row.get("destination")
        asset, amount, color = row.get("asset"), row.get("amount"), row.get("color") or ""
        if not all(isinstance(v, str) for v in (source, destination, asset, color)):
            raise SpecFormatError(f"{where}[{index}]: expected string fields")
        if not _is_int(amount):
            raise SpecFormatError(f"{where}[{index}]: expected an integer 'amount'")
        out.append((source, destination, asset, amount, color))
    return out  # type: ignore[return-value]


def _flags(value: object, where: str) -> frozenset[str]:
    if value is None:
        return frozenset()
    if not isinstance(value, list) or not all(isinstance(f, str) for f in value):
        raise SpecFormatError(f"{where}: expected a list of strings")
    return frozenset(value)


@dataclass(frozen=True, slots=True)
class Inputs:
    """The shared input keys of spec files and ``numscript run`` inputs files."""

    feature_flags: frozenset[str] = frozenset()
    balances: dict[BalanceKey, int] = field(default_factory=dict)
    variables: dict[str, str] = field(default_factory=dict)
    metadata: dict[str, dict[str, str]] = field(default_factory=dict)

    def store(self) -> StaticStore:
        return StaticStore.from_rows(
            [(a, s, c, n) for (a, s, c), n in self.balances.items()], self.metadata
        )


def parse_inputs(document: Mapping[str, Any], where: str = "inputs") -> Inputs:
    """Validate the ``featureFlags``/``balances``/``variables``/``metadata`` keys."""
    return Inputs(
        feature_flags=_flags(document.get("featureFlags"), f"{where}.featureFlags"),
        balances=_balance_rows(document.get("balances"), f"{where}.balances"),
        variables=_str_map(document.get("variables"), f"{where}.variables"),
        metadata=_meta_map(document.get("metadata"), f"{where}.metadata"),
    )


def load_json(text: str | bytes) -> Any:
    """JSON with integers kept as Python ints of any size."""
    return json.loads(text)


# --- JSON-ready views --------------------------------------------------------------------


def posting_json(source: str, destination: str, asset: str, amount: int, color: str) -> dict:
    row: dict[str, Any] = {
        "source": source,
        "destination": destination,
        "amount": amount,
        "asset": asset,
    }
    if color:
        row["color"] = color
    return row


def postings_json(postings: Iterable[Posting]) -> list[dict[str, Any]]:
    return [posting_json(p.source, p.destination, p.asset, p.amount, p.color) for p in postings]


def balances_json(balances: Mapping[BalanceKey, int]) -> list[dict[str, Any]]:
    rows = []
    for (account, asset, color), amount in balances.items():
        row: dict[str, Any] = {"account": account, "asset": asset, "amount": amount}
        if color:
            row["color"] = color
        rows.append(row)
    return rows


def end_balances(
    postings: Iterable[Posting], initial: Mapping[BalanceKey, int]
) -> dict[BalanceKey, int]:
    """Input balances plus the effect of the postings (sorted by account, asset, color)."""
    out = dict(initial)
    for p in postings:
        src = (p.source, p.asset, p.color)
        dst = (p.destination, p.asset, p.color)
        out[src] = out.get(src, 0) - p.amount
        out[dst] = out.get(dst, 0) + p.amount
    return dict(sorted(out.items()))


def movements(postings: Iterable[Posting]) -> dict[tuple[str, str, str, str], int]:
    """Posting amounts summed per (source, destination, asset, color)."""
    out: dict[tuple[str, str, str, str], int] = {}
    for p in postings:
        key = (p.source, p.destination, p.asset, p.color)
        out[key] = out.get(key, 0) + p.amount
    return out


# --- judging -----------------------------------------------------------------------------


def _merge_meta(
    outer: Mapping[str, Mapping[str, str]], inner: Mapping[str, Mapping[str, str]]
) -> dict[str, dict[str, str]]:
    merged = {account: dict(keys) for account, keys in outer.items()}
    for account, keys in inner.items():
        merged.setdefault(account, {}).update(keys)
    return merged


def _judge_success(
    case: Mapping[str, Any],
    result: ExecutionResult,
    balances: Mapping[BalanceKey, int],
    where: str,
) -> list[AssertionFailure]:
    failures: list[AssertionFailure] = []

    def check(name: str, expected: Any, got: Any, ok: bool) -> None:
        if not ok:
            failures.append(AssertionFailure(name, expected, got))

    for flag in ("missingFunds", "negativeAmount"):
        if case.get(f"expect.error.{flag}") is True:
            check(f"expect.error.{flag}", True, False, False)

    expected_postings = case.get("expect.postings")
    if expected_postings is not None:
        rows = _posting_rows(expected_postings, f"{where}.expect.postings")
        got = [(p.source, p.destination, p.asset, p.amount, p.color) for p in result.postings]
        check(
            "expect.postings",
            [posting_json(*row) for row in rows],
            postings_json(result.postings),
            rows == got,
        )

    expected_tx = case.get("expect.txMetadata")
    if expected_tx is not None:
        expected_tx = _str_map(expected_tx, f"{where}.expect.txMetadata")
        check("expect.txMetadata", expected_tx, result.tx_meta, expected_tx == result.tx_meta)

    expected_meta = case.get("expect.metadata")
    if expected_meta is not None:
        expected_meta = _meta_map(expected_meta, f"{where}.expect.metadata")
        got_meta = {account: dict(keys) for account, keys in result.account_meta.items()}
        check("expect.metadata", expected_meta, got_meta, expected_meta == got_meta)

    final = None
    for name in ("expect.endBalances", "expect.endBalances.include"):
        raw = case.get(name)
        if raw is None:
            continue
        expected_rows = _balance_rows(raw, f"{where}.{name}")
        if final is None:
            final = end_balances(result.postings, balances)
        if name == "expect.endBalances":
            ok = expected_rows == final
            got_rows = final
        else:
            ok = all(final.get(key) == amount for key, amount in expected_rows.items())
            got_rows = {key: final[key] for key in expected_rows if key in final}
        check(name, balances_json(expected_rows), balances_json(got_rows), ok)

    raw_movements = case.get("expect.movements")
    if raw_movements is not None:
        rows = _posting_rows(raw_movements, f"{where}.expect.movements")
        expected_moves = sorted((s, d, a, c, n) for s, d, a, n, c in rows)
        got_moves = sorted(
            (s, d, a, c, n) for (s, d, a, c), n in movements(result.postings).items()
        )
        check(
            "expect.movements",
            [posting_json(s, d, a, n, c) for s, d, a, c, n in expected_moves],
            [posting_json(s, d, a, n, c) for s, d, a, c, n in got_moves],
            expected_moves == got_moves,
        )
    return failures


def check_specs(
    script: str,
    specs: str | bytes | Mapping[str, Any],
    *,
    script_path: str = "<script>",
    spec_path: str = "<specs>",
) -> SpecFileResult:
    """Judge every case of one spec document against one script."""

    def file_error(message: str, declared: int = 0) -> SpecFileResult:
        return SpecFileResult(spec_path, script_path, error=message, declared_cases=declared)

    try:
        document = load_json(specs) if isinstance(specs, str | bytes) else specs
    except ValueError as exc:
        return file_error(f"{spec_path}: invalid JSON: {exc}")
    if not isinstance(document, Mapping):
        return file_error(f"{spec_path}: expected a JSON object at the top level")
    raw_cases = document.get("testCases")
    declared = len(raw_cases) if isinstance(raw_cases, list) else 0

    try:
        program = parse(script)
    except NumscriptError as exc:
        return file_error(exc.render(script, script_path), declared)

    try:
        defaults = parse_inputs(document, "specs")
        if raw_cases is None:
            raw_cases = []
        if not isinstance(raw_cases, list) or not all(isinstance(c, dict) for c in raw_cases):
            raise SpecFormatError("specs.testCases: expected a list of objects")
        cases_inputs = []
        for index, case in enumerate(raw_cases):
            if not isinstance(case.get("it"), str):
                raise SpecFormatError(f"specs.testCases[{index}].it: expected a string")
            cases_inputs.append(parse_inputs(case, f"specs.testCases[{index}]"))
    except SpecFormatError as exc:
        return file_error(f"{spec_path}: {exc}", declared)
    if not raw_cases:
        return file_error(f"Empty test suite: {spec_path}")

    has_focus = any(case.get("focus") is True for case in raw_cases)
    results: list[CaseResult] = []
    for index, (case, inputs) in enumerate(zip(raw_cases, cases_inputs, strict=True)):
        it = case["it"]
        if case.get("skip") is True or (has_focus and case.get("focus") is not True):
            results.append(CaseResult(it, "skip"))
            continue
        balances = {**defaults.balances, **inputs.balances}
        variables = {**defaults.variables, **inputs.variables}
        metadata = _merge_meta(defaults.metadata, inputs.metadata)
        merged = Inputs(defaults.feature_flags, balances, variables, metadata)
        failures: list[AssertionFailure] = []
        postings: list[Posting] | None = None
        try:
            result = run(
                program, vars=variables, store=merged.store(), feature_flags=merged.feature_flags
            )
        except MissingFundsError:
            if case.get("expect.error.missingFunds") is not True:
                failures.append(AssertionFailure("expect.error.missingFunds", False, True))
        except NegativeAmountError:
            if case.get("expect.error.negativeAmount") is not True:
                failures.append(AssertionFailure("expect.error.negativeAmount", False, True))
        except NumscriptError as exc:
            return file_error(exc.render(script, script_path), declared)
        else:
            postings = result.postings
            try:
                failures = _judge_success(case, result, balances, f"specs.testCases[{index}]")
            except SpecFormatError as exc:
                return file_error(f"{spec_path}: {exc}", declared)
        results.append(
            CaseResult(
                it,
                "fail" if failures else "pass",
                balances_json(balances),
                variables,
                metadata,
                postings,
                tuple(failures),
            )
        )
    return SpecFileResult(spec_path, script_path, tuple(results), None, declared)


def script_path_for(spec_path: Path) -> Path:
    """``x.num.specs.json`` tests ``x.num`` in the same folder."""
    return spec_path.with_name(spec_path.name[: -len(".specs.json")])


def find_spec_files(paths: Iterable[str | Path]) -> list[Path]:
    """Every ``*.num.specs.json`` under the given files/folders (sorted, deduplicated). A
    ``.num`` path stands for its spec file."""
    found: dict[Path, None] = {}
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            for spec in sorted(path.rglob(f"*{SPEC_SUFFIX}")):
                found[spec] = None
        elif path.name.endswith(SPEC_SUFFIX) and path.is_file():
            found[path] = None
        elif path.suffix == ".num":
            spec = path.with_name(path.name + ".specs.json")
            if spec.is_file():
                found[spec] = None
    return list(found)


def run_spec_file(spec_path: Path, display_root: Path | None = None) -> SpecFileResult:
    """Read ``spec_path`` and its script and judge them. Paths are shown relative to
    ``display_root`` when given."""

    def shown(path: Path) -> str:
        if display_root is not None:
            try:
                return str(path.relative_to(display_root))
            except ValueError:
                pass
        return str(path)

    script_path = script_path_for(spec_path)
    try:
        script = script_path.read_text(encoding="utf-8")
    except OSError as exc:
        return SpecFileResult(
            shown(spec_path), shown(script_path), error=f"cannot read {shown(script_path)}: {exc}"
        )
    try:
        specs = spec_path.read_bytes()
    except OSError as exc:
        return SpecFileResult(
            shown(spec_path), shown(script_path), error=f"cannot read {shown(spec_path)}: {exc}"
        )
    return check_specs(script, specs, script_path=shown(script_path), spec_path=shown(spec_path))


def json_diff(expected: Any, got: Any) -> list[str]:
    """A line diff of two JSON documents: ``- `` expected only, ``+ `` received only."""
    left = json.dumps(expected, indent=2, ensure_ascii=False).splitlines()
    right = json.dumps(got, indent=2, ensure_ascii=False).splitlines()
    out: list[str] = []
    matcher = difflib.SequenceMatcher(a=left, b=right, autojunk=False)
    for tag, i1, i2, j1, j2 in matcher.get_opcodes():
        if tag == "equal":
            out.extend(f"  {line}" for line in left[i1:i2])
            continue
        out.extend(f"- {line}" for line in left[i1:i2])
        out.extend(f"+ {line}" for line in right[j1:j2])
    return out
