"""`python manage.py risk [--asset USD/2] [--at ISO] [--json]`: the defaulting risk.

The Stripe balance (per the ledger) against everything owed to restaurants, riders, open
orders and payouts in flight, with marketing spend and losses per campaign. Logs a warning
(and exits 1 with --strict) when the platform could not cover its payouts."""

from __future__ import annotations

import json
from typing import IO, Any, cast

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils.dateparse import parse_datetime
from rich.console import Console

from marketplace.api.views import risk_data
from marketplace.books import owed_table, risk_tables
from marketplace.selectors import risk_get


class Command(BaseCommand):
    help = "Report the defaulting risk: Stripe balance vs everything owed."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--asset", default="USD/2")
        parser.add_argument("--at", default=None, help="an instant in the past (ISO-8601)")
        parser.add_argument("--json", action="store_true", dest="as_json", help="one JSON object")
        parser.add_argument("--strict", action="store_true", help="exit 1 when not covered")

    def handle(
        self, *args: Any, asset: str, at: str | None, as_json: bool, strict: bool, **opts: Any
    ) -> None:
        instant = None
        if at:
            instant = parse_datetime(at)
            if instant is None or instant.tzinfo is None:
                raise CommandError(f"--at {at!r}: expected ISO-8601 with a time zone")
        risk = risk_get(asset=asset, at=instant)
        if as_json:
            self.stdout.write(_dumps(risk_data(risk)))
        else:
            console = Console(file=cast(IO[str], self.stdout), width=110)
            console.print(owed_table(asset=asset))
            for table in risk_tables(risk):
                console.print(table)
        if strict and not risk.covered:
            raise CommandError(f"not covered: short by {risk.fmt(risk.shortfall)} {asset}")


def _dumps(data: Any) -> str:
    return json.dumps(data, default=str, sort_keys=True)
