"""One test per upstream conformance case (160), plus the `numscript test` command on the
whole suite. The suite must be present: a missing directory fails, it is never skipped."""

from __future__ import annotations

import io
from functools import cache
from pathlib import Path

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from ledger.numscript.cli import format_test_report
from ledger.numscript.specs import SpecFileResult, find_spec_files, json_diff, run_spec_file

from .helpers import conformance_dir

SUITE = conformance_dir()
EXPECTED_FILES = 149
EXPECTED_CASES = 160


@cache
def _file_result(spec: Path) -> SpecFileResult:
    return run_spec_file(spec, SUITE)


def _case_params() -> list:
    if not SUITE.is_dir():
        return [pytest.param(None, -1, id="conformance-suite-missing")]
    params = []
    for spec in find_spec_files([SUITE]):
        result = _file_result(spec)
        count = max(result.declared_cases, 1)
        for index in range(count):
            case_id = f"{result.script_path}[{index}]"
            params.append(pytest.param(spec, index, id=case_id))
    return params


@pytest.mark.parametrize(("spec", "index"), _case_params())
def test_conformance_case(spec: Path | None, index: int) -> None:
    # given
    if spec is None:
        pytest.fail(f"conformance suite not found at {SUITE} (set NUMSCRIPT_CONFORMANCE_DIR)")
    # when
    result = _file_result(spec)
    # then
    assert result.error is None, result.error
    case = result.cases[index]
    details = "\n".join(
        f"{f.assertion}:\n" + "\n".join(json_diff(f.expected, f.got)) for f in case.failures
    )
    assert case.status == "pass", f"{case.it}\n{details}"


def test_suite_has_the_expected_size() -> None:
    assert SUITE.is_dir(), f"conformance suite not found at {SUITE}"
    specs = find_spec_files([SUITE])
    assert len(specs) == EXPECTED_FILES
    assert sum(_file_result(s).declared_cases for s in specs) == EXPECTED_CASES


def test_report_summary_line_for_the_suite() -> None:
    results = [_file_result(s) for s in find_spec_files([SUITE])]
    report = format_test_report(results)
    assert report.text.splitlines()[-1] == f"{EXPECTED_CASES} passed, 0 failed"
    assert report.ok


def test_management_command_runs_the_whole_suite() -> None:
    # given
    out = io.StringIO()
    # when
    call_command("numscript", "test", str(SUITE), stdout=out)
    # then
    lines = out.getvalue().strip().splitlines()
    assert lines[-1] == "160 passed, 0 failed"
    assert sum(line.startswith("✓ ") for line in lines) == EXPECTED_FILES


def test_management_command_fails_when_no_spec_file_is_found(tmp_path: Path) -> None:
    out = io.StringIO()
    with pytest.raises(CommandError, match="no spec files found"):
        call_command("numscript", "test", str(tmp_path), stdout=out)
    assert "No specs files found" in out.getvalue()
