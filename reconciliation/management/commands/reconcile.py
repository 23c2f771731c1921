"""`manage.py reconcile [--date DAY | --from A --to B] [--repair] [--csv PATH] [--json]`

Runs a reconciliation of a window (default: yesterday, UTC) with a progress bar, then prints
the outcomes, totals against Stripe's balance, open problems with their suggested actions and
what changed since the previous run of the same window.

--date DAY         the day [DAY 00:00, DAY+1 00:00) UTC
--from A --to B    days (inclusive: [A 00:00, B+1 00:00)) or ISO date-times ([A, B))
--run ID           do not run: show run ID (with --repair: apply its safe repairs)
--repair           apply the safe repairs (replay dropped webhooks, revert clear duplicates,
                   book fees), then run the window again and print what changed
--no-import        match what is already imported (no Stripe calls)
--csv PATH         write the (last) run's items as CSV ("-" for stdout)
--json             print the summary as JSON instead of tables
--strict           exit with status 2 when problems remain
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils import timezone
from django.utils.dateparse import parse_date, parse_datetime

from audit.context import audit_context
from config.errors import ApplicationError
from config.permissions import command_actor
from reconciliation.models import ReconciliationRun
from reconciliation.reports import console_for, render_run, run_progress
from reconciliation.selectors import items_csv_lines, run_get, run_summary
from reconciliation.services import reconciliation_run, run_repairs_apply, window_for_day


def _moment(text: str, *, end: bool) -> datetime:
    """A day (its start, or the start of the next day for an inclusive end) or a date-time."""
    text = text.strip()
    try:
        if len(text) == 10:  # YYYY-MM-DD (parse_datetime would read it as midnight)
            day = parse_date(text)
            if day is None:
                raise ValueError
            start, next_day = window_for_day(day)
            return next_day if end else start
        moment = parse_datetime(text)
        if moment is None:
            raise ValueError
    except ValueError:
        raise CommandError(f"{text!r} is not a date (YYYY-MM-DD) or an ISO date-time") from None
    return moment if timezone.is_aware(moment) else moment.replace(tzinfo=UTC)


def parse_window(
    *, date: str | None, start: str | None, end: str | None, today: datetime | None = None
) -> tuple[datetime, datetime]:
    if date and (start or end):
        raise CommandError("give either --date or --from/--to, not both")
    if date:
        return _moment(date, end=False), _moment(date, end=True)
    if start or end:
        if not (start and end):
            raise CommandError("--from and --to go together")
        window = _moment(start, end=False), _moment(end, end=True)
        if window[1] <= window[0]:
            raise CommandError("--to must not be before --from")
        return window
    yesterday = (today or timezone.now()).astimezone(UTC).date() - timedelta(days=1)
    return window_for_day(yesterday)


class Command(BaseCommand):
    help = "Reconcile Stripe balance transactions against the ledger for a window."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--date", help="a day, YYYY-MM-DD (UTC)")
        parser.add_argument("--from", dest="start", help="first day or ISO date-time")
        parser.add_argument("--to", dest="end", help="last day (inclusive) or ISO date-time")
        parser.add_argument("--run", type=int, help="show (or repair) an existing run")
        parser.add_argument("--repair", action="store_true", help="apply the safe repairs")
        parser.add_argument("--no-import", action="store_true", help="no Stripe calls")
        parser.add_argument("--csv", dest="csv_path", help="write items as CSV (- for stdout)")
        parser.add_argument("--json", action="store_true", help="summary as JSON")
        parser.add_argument("--strict", action="store_true", help="exit 2 if problems remain")
        parser.add_argument(
            "--as",
            dest="as_user",
            help="act as this user (must hold reconciliation.apply_repairs for --repair)",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        console = console_for(self.stdout)
        try:
            run = self._first_run(options, console)
            runs = [run]
            if options["repair"]:
                actor = command_actor(
                    username=options["as_user"],
                    permission="reconciliation.apply_repairs",
                    command="reconcile --repair",
                )
                with audit_context(via="command"):
                    report = run_repairs_apply(run=run, actor=actor)
                if not options["json"]:
                    console.print(
                        f"Applied {report.applied} safe repair(s) of run {run.pk}"
                        + (f", {report.failed} failed" if report.failed else "")
                        + "; running the window again."
                    )
                    for note in report.notes[:50]:
                        console.print(f"  {note}")
                runs.append(self._run(run.window_start, run.window_end, options, console))
        except ApplicationError as exc:
            raise CommandError(exc.message) from None
        last = runs[-1]
        if options["json"]:
            payload = [run_summary(run=r) for r in runs]
            self.stdout.write(json.dumps(payload if len(payload) > 1 else payload[0], indent=2))
        else:
            for r in runs if options["run"] is None else runs[1:]:
                render_run(console, r)
        if options["csv_path"]:
            self._csv(last, options["csv_path"])
        if options["strict"] and last.problems:
            raise CommandError(f"{last.problems} problem(s) remain in run {last.pk}", returncode=2)

    def _first_run(self, options: dict[str, Any], console: Any) -> ReconciliationRun:
        if options["run"] is not None:
            if options["date"] or options["start"] or options["end"]:
                raise CommandError("--run does not take a window")
            run = run_get(run_id=options["run"])
            if not options["json"]:
                render_run(console, run)
            return run
        start, end = parse_window(date=options["date"], start=options["start"], end=options["end"])
        return self._run(start, end, options, console)

    def _run(
        self, start: datetime, end: datetime, options: dict[str, Any], console: Any
    ) -> ReconciliationRun:
        if options["json"]:
            return reconciliation_run(
                window_start=start, window_end=end, import_from_stripe=not options["no_import"]
            )
        with run_progress(console) as progress:
            return reconciliation_run(
                window_start=start,
                window_end=end,
                import_from_stripe=not options["no_import"],
                progress=progress,
            )

    def _csv(self, run: ReconciliationRun, path: str) -> None:
        if path == "-":
            for line in items_csv_lines(run=run):
                self.stdout.write(line, ending="")
            return
        with open(path, "w", encoding="utf-8", newline="") as handle:
            for line in items_csv_lines(run=run):
                handle.write(line)
        self.stderr.write(f"wrote items of run {run.pk} to {path}")
