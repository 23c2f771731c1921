"""`manage.py invoices check [--period YYYY-MM]` (exit 1 on any mismatch),
`invoices issue [--order ID ...]` (the sweep, or the given orders),
`invoices month-end --period YYYY-MM` (commission invoices and rider statements)."""

from __future__ import annotations

import re
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

PERIOD = re.compile(r"^\d{4}-(0[1-9]|1[0-2])$")


def _period(value: str) -> str:
    if not PERIOD.match(value):
        raise CommandError(f"--period must be YYYY-MM, got {value!r}")
    return value


class Command(BaseCommand):
    help = "Issue invoices and check that they tie to the ledger."

    def add_arguments(self, parser: CommandParser) -> None:
        sub = parser.add_subparsers(dest="action", required=True)
        check = sub.add_parser("check")
        check.add_argument("--period")
        issue = sub.add_parser("issue")
        issue.add_argument("--order", type=int, action="append", default=[])
        month = sub.add_parser("month-end")
        month.add_argument("--period", required=True)

    def handle(self, *args: Any, action: str, **options: Any) -> None:
        from invoicing.check import invoices_check
        from invoicing.services import invoices_issue, invoices_issue_period, invoices_sweep

        if action == "check":
            period = _period(options["period"]) if options.get("period") else None
            result = invoices_check(period=period)
            for line in result.mismatches[:50]:
                self.stdout.write(f"mismatch: {line}")
            self.stdout.write(result.summary())
            if not result.ok:
                raise CommandError("documents do not tie to the ledger")
            return
        if action == "issue":
            issued = invoices_issue(options["order"]) if options["order"] else invoices_sweep()
        else:
            issued = invoices_issue_period(period=_period(options["period"]))
        for label, n in sorted(issued.issued.items()):
            self.stdout.write(f"{label}: {n}")
        for anomaly in issued.anomalies:
            self.stdout.write(f"anomaly: {anomaly}")
        self.stdout.write(f"issued {issued.count} document(s)")
