"""`manage.py stripe_events replay [EVENT_ID ... | --failed]` and
`manage.py stripe_events sync --since WHEN [--type T ...] [--undelivered-only]`.

replay  runs an event's handler again now, inline (handlers are idempotent); an event absent
        from the inbox is fetched from Stripe first. `--failed` replays every failed row.
sync    lists events from the Stripe API created since WHEN (ISO date/time, unix seconds, or
        a duration such as 36h / 3d; Stripe keeps 30 days) and stores the ones the inbox is
        missing, scheduling their processing like a webhook delivery would.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils import timezone
from django.utils.dateparse import parse_date, parse_datetime

from config.errors import ApplicationError
from stripe_gateway import services

_DURATION = re.compile(r"^(\d+)([smhd])$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}


def parse_since(text: str, *, now: datetime | None = None) -> datetime:
    """`2026-11-01`, `2026-11-01T12:00:00Z`, `1793000000`, `36h`, `3d` -> aware datetime."""
    now = now or timezone.now()
    text = text.strip()
    duration = _DURATION.match(text)
    if duration:
        return now - timedelta(**{_UNITS[duration.group(2)]: int(duration.group(1))})
    if text.isascii() and text.isdigit():
        return datetime.fromtimestamp(int(text), tz=UTC)
    try:
        moment = parse_datetime(text)
        if moment is None:
            day = parse_date(text)
            moment = datetime(day.year, day.month, day.day) if day else None
    except ValueError:
        moment = None
    if moment is None:
        raise CommandError(f"--since {text!r}: expected an ISO date/time, unix seconds or 3d/36h")
    return moment if timezone.is_aware(moment) else moment.replace(tzinfo=UTC)


class Command(BaseCommand):
    help = "Replay inbox events, or sync missed events from the Stripe API."

    def add_arguments(self, parser: CommandParser) -> None:
        sub = parser.add_subparsers(dest="action", required=True)
        replay = sub.add_parser("replay", help="run handlers again for events")
        replay.add_argument("event_ids", nargs="*", metavar="EVENT_ID")
        replay.add_argument("--failed", action="store_true", help="every failed event")
        replay.add_argument(
            "--no-fetch", action="store_true", help="do not fetch events missing from the inbox"
        )
        sync = sub.add_parser("sync", help="fetch events from the API to fill gaps")
        sync.add_argument("--since", required=True, help="ISO date/time, unix seconds, 3d, 36h")
        sync.add_argument("--type", action="append", dest="types", default=None)
        sync.add_argument(
            "--undelivered-only",
            action="store_true",
            help="only events Stripe failed to deliver (delivery_success=false)",
        )
        sync.add_argument(
            "--no-schedule", action="store_true", help="store only; let the sweeper process"
        )

    def handle(self, *args: Any, action: str, **options: Any) -> None:
        if action == "replay":
            self._replay(
                options["event_ids"], failed=options["failed"], fetch=not options["no_fetch"]
            )
        else:
            self._sync(options)

    def _replay(self, event_ids: list[str], *, failed: bool, fetch: bool) -> None:
        if failed == bool(event_ids):
            raise CommandError("give either EVENT_ID(s) or --failed")
        ids = services.events_failed() if failed else event_ids
        problems = 0
        for event_id in ids:
            if not event_id.startswith("evt_"):
                raise CommandError(f"{event_id!r} is not a Stripe event id (evt_...)")
            try:
                outcome = services.event_replay(event_id=event_id, fetch_missing=fetch)
            except ApplicationError as exc:
                problems += 1
                self.stderr.write(f"{event_id}: {exc.code}: {exc.message}")
                continue
            if outcome.status not in ("processed", "ignored"):
                problems += 1
            detail = f" ({outcome.error})" if outcome.error else ""
            self.stdout.write(f"{event_id}: {outcome.status}{detail}")
        self.stdout.write(f"replayed {len(ids)} event(s), {problems} not processed")
        if problems:
            raise CommandError(f"{problems} event(s) did not process")

    def _sync(self, options: dict[str, Any]) -> None:
        since = parse_since(options["since"])
        if since < timezone.now() - timedelta(days=30):
            self.stderr.write("warning: Stripe only lists the last 30 days of events")
        try:
            result = services.events_sync(
                since=since,
                types=options["types"],
                undelivered_only=options["undelivered_only"],
                schedule=not options["no_schedule"],
            )
        except ApplicationError as exc:
            raise CommandError(f"{exc.code}: {exc.message}") from exc
        self.stdout.write(
            f"sync since {since.isoformat()}: {result.seen} seen, {result.stored} stored, "
            f"{result.already} already in the inbox, {result.invalid} invalid"
        )
