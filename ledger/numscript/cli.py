"""Output of ``numscript test``, ``check`` and ``run``, as pure functions returning text.

The ``numscript`` management command only reads files, calls these and writes the result.
The layout follows the upstream Go CLI (a pass or fail mark per file, ``FAIL file > case`` blocks
with a ``- Expected`` / ``+ Received`` diff, ``Postings:`` tables, JSON output).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .checker import Diagnostic, has_errors
from .interpreter import ExecutionResult, Posting
from .specs import CaseResult, Inputs, SpecFileResult, json_diff, load_json, parse_inputs

# U+276F and U+00D7, the marks upstream prints for a failing file and a failing case
_FAIL_MARK = "\u276f"
_CASE_FAIL = "\u00d7"
_RESET = "\033[0m"
_STYLES = {
    "red": "\033[31m",
    "green": "\033[32m",
    "gray": "\033[90m",
    "bold": "\033[1m",
    "underline": "\033[4m",
    "fail": "\033[41;97;1m",
}


class _Paint:
    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled

    def __call__(self, style: str, text: str) -> str:
        if not self.enabled or not text:
            return text
        return f"{_STYLES[style]}{text}{_RESET}"


def table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A box-drawn table."""
    cells = [[str(c) for c in headers]] + [[str(c) for c in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]

    def line(left: str, mid: str, right: str) -> str:
        return left + mid.join("─" * (w + 2) for w in widths) + right

    def row_text(row: list[str]) -> str:
        return "│" + "│".join(f" {c.ljust(w)} " for c, w in zip(row, widths, strict=True)) + "│"

    out = [line("┌", "┬", "┐"), row_text(cells[0]), line("├", "┼", "┤")]
    out.extend(row_text(row) for row in cells[1:])
    out.append(line("└", "┴", "┘"))
    return "\n".join(out)


def postings_table(postings: Sequence[Posting]) -> str:
    with_color = any(p.color for p in postings)
    headers = ["Source", "Destination", "Asset"] + (["Color"] if with_color else []) + ["Amount"]
    rows = [
        [p.source, p.destination, p.asset] + ([p.color] if with_color else []) + [p.amount]
        for p in postings
    ]
    return table(headers, rows)


def _map_table(key: str, value: str, data: Mapping[str, str]) -> str:
    return table([key, value], sorted(data.items()))


# --- numscript run -----------------------------------------------------------------------


def load_inputs(text: str | bytes) -> Inputs:
    """Parse a ``numscript run`` inputs file (``inputs.schema.json``). Raises ValueError."""
    document = load_json(text)
    if not isinstance(document, dict):
        raise ValueError("inputs: expected a JSON object")
    return parse_inputs(document)


def result_json(result: ExecutionResult) -> dict[str, Any]:
    """Upstream's ``-o json`` shape (tx metadata values are strings)."""
    return {
        "postings": [
            {
                "source": p.source,
                "destination": p.destination,
                "amount": p.amount,
                "asset": p.asset,
                **({"color": p.color} if p.color else {}),
            }
            for p in result.postings
        ],
        "txMeta": dict(result.tx_meta),
        "accountsMeta": {a: dict(m) for a, m in result.account_meta.items()},
    }


def format_run_result(result: ExecutionResult, *, as_json: bool = False) -> str:
    if as_json:
        return json.dumps(result_json(result), indent=2)
    parts = ["Postings:", postings_table(result.postings) if result.postings else "(none)"]
    if result.tx_meta:
        parts += ["", "Meta:", _map_table("Name", "Value", result.tx_meta)]
    if result.account_meta:
        rows = [
            (account, key, value)
            for account, keys in sorted(result.account_meta.items())
            for key, value in sorted(keys.items())
        ]
        parts += ["", "Accounts meta:", table(["Account", "Name", "Value"], rows)]
    return "\n".join(parts)


# --- numscript check ---------------------------------------------------------------------


def format_diagnostics(
    source: str, diagnostics: Sequence[Diagnostic], filename: str
) -> tuple[str, bool]:
    """Rendered diagnostics and whether the file is free of errors."""
    if not diagnostics:
        return f"{filename}: no problems found", True
    errors = sum(d.severity == "error" for d in diagnostics)
    warnings = len(diagnostics) - errors
    body = "\n\n".join(d.render(source, filename) for d in diagnostics)
    summary = f"{errors} error{'s' if errors != 1 else ''}, {warnings} warning" + (
        "s" if warnings != 1 else ""
    )
    return f"{body}\n\n{summary}", not has_errors(diagnostics)


# --- numscript test ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TestReport:
    text: str
    files: int
    passed: int
    failed: int
    skipped: int

    @property
    def ok(self) -> bool:
        return self.files > 0 and self.failed == 0 and self.skipped == 0


def _case_block(result: SpecFileResult, case: CaseResult, paint: _Paint) -> list[str]:
    out = ["", "", paint("fail", " FAIL ") + paint("red", f" {result.spec_path} > {case.it}")]
    if case.balances or case.metadata or case.variables:
        out += ["", paint("underline", "GIVEN:")]
    if case.balances:
        with_color = any("color" in row for row in case.balances)
        headers = ["Account", "Asset"] + (["Color"] if with_color else []) + ["Balance"]
        rows = [
            [row["account"], row["asset"]]
            + ([row.get("color", "")] if with_color else [])
            + [row["amount"]]
            for row in case.balances
        ]
        out += ["", table(headers, rows)]
    if case.metadata:
        meta_rows = [
            (account, key, value)
            for account, keys in case.metadata.items()
            for key, value in keys.items()
        ]
        out += ["", table(["Account", "Name", "Value"], meta_rows)]
    if case.variables:
        out += ["", _map_table("Name", "Value", case.variables)]
    if case.postings is not None:
        out += ["", paint("underline", "GOT:"), ""]
        out.append(postings_table(case.postings) if case.postings else "(no postings)")
    out += ["", paint("green", "- Expected"), paint("red", "+ Received"), ""]
    for failure in case.failures:
        out += [paint("underline", failure.assertion), ""]
        for line in json_diff(failure.expected, failure.got):
            style = {"-": "green", "+": "red"}.get(line[:1], "gray")
            out.append(paint(style, line))
        out.append("")
    return out


def format_test_report(results: Sequence[SpecFileResult], *, color: bool = False) -> TestReport:
    paint = _Paint(color)
    if not results:
        return TestReport(paint("red", "No specs files found"), 0, 0, 0, 0)
    out: list[str] = []
    details: list[str] = []
    for result in results:
        script = result.script_path
        if result.error is not None:
            out.append(f"{paint('red', '✗')} {script} {paint('gray', '(file error)')}")
            details += ["", "", paint("fail", " ERROR ") + paint("red", f" {result.spec_path}"), ""]
            details.append(result.error)
            continue
        total = len(result.cases)
        if result.failed == 0 and result.skipped == 0:
            out.append(f"{paint('green', '✓')} {script} {paint('gray', f'({total} tests)')}")
        else:
            counts = [f"{total} tests"]
            if result.failed:
                counts.append(paint("red", f"{result.failed} failed"))
            if result.skipped:
                counts.append(f"{result.skipped} skipped")
            out.append(
                f"{paint('red', _FAIL_MARK)} {script} {paint('gray', '(' + ' | '.join(counts) + ')')}"
            )
            for case in result.cases:
                mark = {"pass": paint("green", "✓"), "fail": paint("red", _CASE_FAIL), "skip": "↓"}
                out.append(f"  {mark[case.status]} {case.it}")
        for case in result.cases:
            if case.status == "fail":
                details += _case_block(result, case, paint)

    passed = sum(r.passed for r in results)
    failed = sum(r.failed for r in results)
    skipped = sum(r.skipped for r in results)
    failed_files = sum(1 for r in results if r.error is not None or r.failed)
    files_line = [f"{failed_files} failed"] if failed_files else []
    if len(results) - failed_files:
        files_line.append(f"{len(results) - failed_files} passed")
    tests_line = [f"{failed} failed"] if failed else []
    tests_line.append(f"{passed} passed")
    if skipped:
        tests_line.append(f"{skipped} skipped")
    summary = [
        "",
        f" Test files  {' | '.join(files_line)} ({len(results)})",
        f"      Tests  {' | '.join(tests_line)} ({passed + failed + skipped})",
        f"{passed} passed, {failed} failed",
    ]
    text = "\n".join(out + details + summary)
    return TestReport(text, len(results), passed, failed, skipped)


def display_root(paths: Sequence[str | Path]) -> Path | None:
    """The folder spec paths are shown relative to (the single folder given, if any)."""
    if len(paths) == 1 and Path(paths[0]).is_dir():
        return Path(paths[0])
    return None
