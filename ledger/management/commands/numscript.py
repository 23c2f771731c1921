"""``manage.py numscript``: test spec files, check a script, run a script on static inputs.

    manage.py numscript test [PATH ...]          # *.num.specs.json under PATHs (default .)
    manage.py numscript check FILE               # static diagnostics, non-zero on errors
    manage.py numscript run FILE [--inputs FILE.json] [--dry-run] [--json]

Thin: reads files, calls ``ledger.numscript`` and prints what ``ledger.numscript.cli``
formats. Running against the ledger database goes through :func:`_run_against_ledger`.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from ledger.numscript import ExecutionResult, NumscriptError, Program, check, parse, run
from ledger.numscript.cli import (
    display_root,
    format_diagnostics,
    format_run_result,
    format_test_report,
    load_inputs,
)
from ledger.numscript.specs import SpecFormatError, find_spec_files, run_spec_file


def _run_against_ledger(
    program: Program,
    *,
    vars: Mapping[str, str],
    feature_flags: frozenset[str],
    dry_run: bool,
) -> ExecutionResult:
    """Run ``program`` against the ledger database (balances and metadata of locked rows)
    and, unless ``dry_run``, post the resulting transaction (wired by the ledger:
    ``ledger.services.scripts.script_execute``)."""
    from ledger.errors import LedgerError
    from ledger.services.scripts import script_execute

    try:
        outcome = script_execute(
            program=program,
            source="",
            vars=vars,
            feature_flags=feature_flags,
            dry_run=dry_run,
            actor="manage.py numscript",
            raise_script_errors=True,
        )
    except LedgerError as exc:
        raise CommandError(f"{exc.code}: {exc.message}", returncode=1) from exc
    assert outcome.execution is not None  # no reference: never a replay
    return outcome.execution


class Command(BaseCommand):
    help = "Numscript tools: run conformance specs, check a script, run a script."
    requires_system_checks: list[str] = []

    def add_arguments(self, parser: CommandParser) -> None:
        sub = parser.add_subparsers(dest="subcommand", required=True, metavar="{test,check,run}")
        test = sub.add_parser("test", help="run *.num.specs.json files")
        test.add_argument("paths", nargs="*", default=["."], metavar="PATH")
        check_ = sub.add_parser("check", help="statically check a script")
        check_.add_argument("file", metavar="FILE")
        run_ = sub.add_parser("run", help="run a script")
        run_.add_argument("file", metavar="FILE")
        run_.add_argument(
            "--inputs",
            metavar="FILE.json",
            help="inputs file (default: FILE.inputs.json next to the script)",
        )
        run_.add_argument("--dry-run", action="store_true", help="compute postings only")
        run_.add_argument("--json", action="store_true", help="print JSON instead of tables")

    def handle(self, *args: Any, **options: Any) -> None:
        subcommand = options["subcommand"]
        if subcommand == "test":
            self._test(options["paths"], options.get("no_color", False))
        elif subcommand == "check":
            self._check(options["file"])
        else:
            self._run(options["file"], options["inputs"], options["dry_run"], options["json"])

    def _color(self, no_color: bool) -> bool:
        isatty = getattr(self.stdout, "isatty", lambda: False)
        return not no_color and bool(isatty())

    def _test(self, paths: list[str], no_color: bool) -> None:
        root = display_root(paths)
        results = [run_spec_file(spec, root) for spec in find_spec_files(paths)]
        report = format_test_report(results, color=self._color(no_color))
        self.stdout.write(report.text)
        if not report.ok:
            if report.files == 0:
                raise CommandError("no spec files found", returncode=1)
            raise CommandError(f"{report.failed} failed, {report.skipped} skipped", returncode=1)

    def _read(self, path: str) -> str:
        try:
            return Path(path).read_text(encoding="utf-8")
        except OSError as exc:
            raise CommandError(f"cannot read {path}: {exc.strerror}", returncode=2) from exc

    def _check(self, file: str) -> None:
        source = self._read(file)
        text, ok = format_diagnostics(source, check(source), file)
        (self.stdout if ok else self.stderr).write(text)
        if not ok:
            raise CommandError(f"{file} has errors", returncode=1)

    def _run(self, file: str, inputs_path: str | None, dry_run: bool, as_json: bool) -> None:
        source = self._read(file)
        path = Path(inputs_path) if inputs_path else Path(file + ".inputs.json")
        try:
            program = parse(source)
            if inputs_path is None and not path.exists():
                result = _run_against_ledger(
                    program, vars={}, feature_flags=frozenset(), dry_run=dry_run
                )
            else:
                try:
                    inputs = load_inputs(path.read_bytes())
                except OSError as exc:
                    raise CommandError(f"cannot read {path}: {exc.strerror}", returncode=2) from exc
                except (ValueError, SpecFormatError) as exc:
                    raise CommandError(f"invalid inputs file {path}: {exc}", returncode=2) from exc
                result = run(
                    program,
                    vars=inputs.variables,
                    store=inputs.store(),
                    feature_flags=inputs.feature_flags,
                )
        except NumscriptError as exc:
            self.stderr.write(exc.render(source, file))
            raise CommandError(type(exc).__name__, returncode=1) from exc
        self.stdout.write(format_run_result(result, as_json=as_json))
