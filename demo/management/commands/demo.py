"""`python manage.py demo [--orders N] [--seed S]`: the product on its embedded default (what
`make demo` runs): migrate, serve the app on loopback, start the Stripe emulator with webhook
chaos (duplicates and shuffled order), play a day of the marketplace through the real HTTP
paths (`demo.day`), hand the day to the payouts and reconciliation stages when
they exist, and print the books. Exits non-zero if the books do not balance."""

from __future__ import annotations

import importlib
import importlib.util
import logging
import time
from pathlib import Path
from typing import IO, Any, cast

import requests
from django.conf import settings
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import connection, connections
from django.db.models import Count
from rich.console import Console
from rich.panel import Panel

from ops.server import AppServer

# The stages other apps add to the day, each `fn(ctx, stdout)`; called if importable.
STAGES = (
    ("demo.payouts", "demo_payouts"),
    ("demo.reconciliation", "demo_reconciliation"),
    ("demo.invoicing", "demo_invoicing"),
    ("demo.staff", "demo_staff"),
)


def _demo_settings(seed: int) -> None:
    """In-process settings for the day: Celery eager, short retries of out-of-order events."""
    from config.celery import app as celery_app

    settings.CELERY_TASK_ALWAYS_EAGER = True
    celery_app.conf.task_always_eager = True
    celery_app.conf.task_eager_propagates = True
    settings.MARKETPLACE_DEFER_SECONDS = 0.05
    settings.STRIPE_EVENTS_BACKOFF_BASE = 0.05
    settings.STRIPE_EVENTS_BACKOFF_MAX = 0.5
    settings.STRIPE_EVENTS_MAX_ATTEMPTS = 200
    settings.STRIPE_API_KEY = "sk_test_emulator"
    if connection.vendor == "sqlite":
        # The app serves requests in threads while webhooks arrive: take the write lock when a
        # transaction begins, so that two writers wait for each other instead of deadlocking
        # on a lock upgrade (SQLite answers that with an immediate "database is locked").
        options = connections.settings["default"].setdefault("OPTIONS", {})
        options["transaction_mode"] = "IMMEDIATE"
        # WAL: readers do not block the writer; NORMAL: no fsync per commit (a demo file).
        options["init_command"] = "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;"
        connection.close()


def _emulator_state_path() -> str | None:
    """Where the emulator keeps Stripe's side of the books between runs: next to the SQLite
    database (var/demo.sqlite3 -> var/demo-stripe.sqlite3), so that a second `make demo` on
    the same database continues the same Stripe account. Forgotten when the database is
    fresh (deleted, or never migrated): both sides start over together. None (in memory) on
    other databases. Call before migrating."""
    if connection.vendor != "sqlite":
        return None
    name = Path(str(connection.settings_dict["NAME"]))
    state = name.with_name(f"{name.stem}-stripe.sqlite3")
    fresh = "marketplace_order" not in connection.introspection.table_names()
    if fresh and state.exists():
        state.unlink()
    return str(state)


def _demo_token(username: str, roles: list[str]) -> str:
    """An API token for a demo user holding `roles` (development only: the demo refuses to
    run in production). Tokens are stored hashed, so a new one is issued each run."""
    from django.contrib.auth import get_user_model
    from django.contrib.auth.models import Group
    from knox.models import AuthToken

    user, _ = get_user_model().objects.get_or_create(
        username=username, defaults={"is_staff": True, "email": f"{username}@example.com"}
    )
    user.groups.add(*Group.objects.filter(name__in=roles))
    return str(AuthToken.objects.create(user=user)[1])


class Command(BaseCommand):
    help = "Play a day of the marketplace through the real HTTP paths and print the books."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--orders", type=int, default=300)
        parser.add_argument("--seed", type=int, default=42)

    def handle(self, *args: Any, orders: int, seed: int, **options: Any) -> None:
        if orders < 1:
            raise CommandError("--orders must be at least 1")
        from demo.day import demo_day
        from marketplace.books import books_print
        from stripe_emulator import ChaosConfig, EmulatorServer

        console = Console(file=cast(IO[str], self.stdout), width=120)
        started = time.perf_counter()
        quiet = logging.getLogger()
        previous_level = quiet.level
        _demo_settings(seed)
        stripe_state = _emulator_state_path()
        with console.status("migrating the database"):
            call_command("migrate", verbosity=0, interactive=False)
        # The day's staff work as three people: operations (onboarding, orders, campaigns,
        # books), and a second person in Finance who approves the refunds above the
        # four-eyes threshold.
        token = _demo_token("demo-staff", ["Finance admin", "Marketing", "Service account"])
        approver_token = _demo_token("demo-finance", ["Finance"])
        # Anomalies and refused requests are part of the story: the tables tell it.
        quiet.setLevel(logging.ERROR)
        logging.getLogger("django.request").setLevel(logging.ERROR)
        try:
            with AppServer() as app:
                health = requests.get(f"{app.url}/healthz", timeout=5)
                if health.status_code != 200:
                    raise CommandError(f"the app is not healthy: {health.status_code}")
                emulator = EmulatorServer(
                    webhook_url=f"{app.url}/webhooks/stripe/",
                    chaos=ChaosConfig(seed=seed, duplicate_rate=0.3, shuffle=True),
                    db_path=stripe_state,
                )
                emulator.start()
                settings.STRIPE_API_BASE = emulator.url
                settings.STRIPE_WEBHOOK_SECRETS = [emulator.webhook_secret]
                console.print(
                    Panel.fit(
                        f"app {app.url}   Stripe emulator {emulator.url}\n"
                        f"{orders} orders, seed {seed}; webhooks signed, duplicated "
                        "(30%) and shuffled",
                        title="the marketplace demo day",
                    )
                )
                try:
                    ctx = demo_day(
                        app_url=app.url,
                        emulator=emulator,
                        token=token,
                        approver_token=approver_token,
                        orders=orders,
                        seed=seed,
                        console=console,
                    )
                    self._stages(ctx, console)
                    self._summary(ctx, console)
                    balanced = books_print(console)
                finally:
                    emulator.stop()
        finally:
            quiet.setLevel(previous_level)
        console.print(f"demo finished in {time.perf_counter() - started:.1f} s")
        if ctx.errors:
            for error in ctx.errors[:20]:
                console.print(f"[red]error:[/red] {error}")
        self._browse_howto(console)
        if not balanced:
            raise CommandError("the books do not balance")
        if ctx.errors:
            raise CommandError(f"{len(ctx.errors)} error(s) during the day")

    def _stages(self, ctx: Any, console: Console) -> None:
        for module_name, function_name in STAGES:
            if importlib.util.find_spec(module_name.split(".")[0]) is None:
                continue
            try:
                if importlib.util.find_spec(module_name) is None:
                    continue
            except ModuleNotFoundError:
                continue
            stage = getattr(importlib.import_module(module_name), function_name, None)
            if stage is None:
                continue
            started = time.perf_counter()
            stage(ctx, self.stdout)
            ctx.timings[function_name] = round(time.perf_counter() - started, 2)

    def _browse_howto(self, console: Console) -> None:
        """How to browse the day as staff (the staff app's, when it is there)."""
        if importlib.util.find_spec("demo.staff") is not None:
            importlib.import_module("demo.staff").demo_browse_howto(console)

    def _summary(self, ctx: Any, console: Console) -> None:
        from rich.table import Table

        from marketplace.models import Anomaly, Order
        from stripe_gateway.models import StripeEvent

        stats = ctx.emulator.stats()["webhooks"]
        table = Table(title="The day")
        table.add_column("what")
        table.add_column("count", justify="right")
        statuses = dict(
            Order.objects.filter(pk__in=ctx.orders).values_list("status").annotate(n=Count("id"))
        )
        table.add_row(
            "restaurants / riders onboarded", f"{len(ctx.restaurants)} / {len(ctx.riders)}"
        )
        table.add_row("orders placed", str(len(ctx.orders)))
        for status, count in sorted(statuses.items()):
            table.add_row(f"  {status}", str(count))
        table.add_row(
            "orders with the coupon",
            str(Order.objects.filter(pk__in=ctx.orders, campaign__isnull=False).count()),
        )
        table.add_row("refunds requested", str(len(ctx.refunds)))
        table.add_row("disputes", str(len(ctx.disputes)))
        table.add_row(
            "webhooks delivered (duplicates)",
            f"{stats.get('delivered', 0)} ({stats.get('duplicates', 0)})",
        )
        events = dict(StripeEvent.objects.values_list("status").annotate(n=Count("id")))
        table.add_row(
            "inbox events by status", ", ".join(f"{k} {v}" for k, v in sorted(events.items()))
        )
        table.add_row("anomalies flagged", str(Anomaly.objects.filter(resolved=False).count()))
        table.add_row("timings (s)", ", ".join(f"{k} {v}" for k, v in ctx.timings.items()))
        console.print(table)
