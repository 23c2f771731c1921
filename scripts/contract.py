"""`make contract`: the REST API keeps its OpenAPI contract, proven by schemathesis.

Creates a throwaway PostgreSQL database (DATABASE_URL, dropped before and after), migrates it,
starts the Stripe emulator and the app on loopback (a free port), plays a short day of the
marketplace through the API so that objects exist, issues a token for a user holding every
role, and runs schemathesis over every operation of /api/schema/ (coverage, fuzzing and
stateful phases; fixed seed; bounded examples). Prints the request count and the duration;
exits non-zero on any failure.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/eats_contract \\
        python scripts/contract.py --seed 17 --max-examples 25 [-- extra schemathesis args]
"""

from __future__ import annotations

import argparse
import io
import os
import socketserver
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
os.environ.setdefault("DJANGO_ENV", "test")
os.environ.setdefault("CELERY_EAGER", "1")

CHECKS = ",".join(
    [
        "not_a_server_error",
        "response_schema_conformance",
        "status_code_conformance",
        "content_type_conformance",
    ]
)


class _Quiet(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


class _Threading(socketserver.ThreadingMixIn, WSGIServer):
    daemon_threads = True


class CountingServer:
    """The Django app on loopback, counting the requests it answers and the 5xx among them."""

    def __init__(self) -> None:
        from django.core.handlers.wsgi import WSGIHandler

        self.requests = 0
        self.server_errors = 0
        self._lock = threading.Lock()
        django_app = WSGIHandler()

        def app(environ: dict[str, Any], start_response: Any) -> Any:
            def counting_start(status: str, headers: Any, exc_info: Any = None) -> Any:
                with self._lock:
                    self.requests += 1
                    self.server_errors += status.startswith("5")
                return start_response(status, headers, exc_info)

            return django_app(environ, counting_start)

        self._httpd = make_server(
            "127.0.0.1", 0, app, server_class=_Threading, handler_class=_Quiet
        )
        self.url = f"http://127.0.0.1:{self._httpd.server_port}"
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)

    def __enter__(self) -> CountingServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()


def _admin_connect() -> Any:
    import psycopg
    from django.db import connection

    s = connection.settings_dict
    params: dict[str, Any] = {
        "host": s.get("HOST") or "127.0.0.1",
        "port": s.get("PORT") or 5432,
        "user": s.get("USER") or "postgres",
        "dbname": "postgres",
        "autocommit": True,
    }
    if s.get("PASSWORD"):
        params["password"] = s["PASSWORD"]
    return psycopg.connect(**params)


def database_drop() -> None:
    from django.db import connection
    from psycopg import sql

    connection.close()
    name = connection.settings_dict["NAME"]
    with _admin_connect() as admin:
        admin.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )


def contract_user_token() -> str:
    """A staff user holding every role (every operation reachable), and its API token."""
    from django.contrib.auth import get_user_model
    from django.contrib.auth.models import Group, Permission
    from knox.models import AuthToken

    from staff.roles import ROLES, roles_sync

    roles_sync(group_model=Group, permission_model=Permission)
    user = get_user_model().objects.create_user("contract", is_staff=True)
    user.groups.add(*Group.objects.filter(name__in=list(ROLES)))
    return str(AuthToken.objects.create(user=user)[1])


def seed_objects(app_url: str, emulator: Any, token: str, approver: str) -> None:
    """A short marketplace day through the API: restaurants, riders, a campaign, orders paid
    through signed webhooks, deliveries, refunds, a dispute, a top-up."""
    from rich.console import Console

    from demo.day import demo_day

    demo_day(
        app_url=app_url,
        emulator=emulator,
        token=token,
        approver_token=approver,
        orders=6,
        seed=17,
        console=Console(file=io.StringIO()),
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seed", type=int, default=17)
    parser.add_argument("--max-examples", type=int, default=25)
    parser.add_argument("--phases", default="coverage,fuzzing,stateful")
    parser.add_argument("--keep-db", action="store_true", help="do not drop the database")
    parser.add_argument("extra", nargs="*", help="more schemathesis arguments (after --)")
    args = parser.parse_args(argv)

    import django

    django.setup()
    import logging

    from django.conf import settings
    from django.core.management import call_command

    from config.celery import app as celery_app
    from stripe_emulator import EmulatorServer

    # Refused requests are the point of the run: keep the log to what a bug would print.
    logging.getLogger("django.request").setLevel(logging.CRITICAL)
    for name in ("stripe_emulator", "celery", "payouts", "marketplace", "ledger", "reconciliation"):
        logging.getLogger(name).setLevel(logging.ERROR)
    celery_app.conf.task_always_eager = True
    celery_app.conf.task_eager_propagates = False
    settings.CELERY_TASK_ALWAYS_EAGER = True
    settings.STRIPE_API_KEY = "sk_test_emulator"
    settings.MARKETPLACE_DEFER_SECONDS = 0.05
    settings.STRIPE_EVENTS_BACKOFF_BASE = 0.05
    settings.STRIPE_EVENTS_BACKOFF_MAX = 0.5

    started = time.monotonic()
    database_drop()
    call_command("db_setup", verbosity=0)
    try:
        token = contract_user_token()
        from django.contrib.auth import get_user_model
        from django.contrib.auth.models import Group
        from knox.models import AuthToken

        approver = get_user_model().objects.create_user("contract-approver", is_staff=True)
        approver.groups.add(*Group.objects.filter(name="Finance"))
        approver_token = str(AuthToken.objects.create(user=approver)[1])
        with CountingServer() as app:
            emulator = EmulatorServer(webhook_url=f"{app.url}/webhooks/stripe/")
            emulator.start()
            settings.STRIPE_API_BASE = emulator.url
            settings.STRIPE_WEBHOOK_SECRETS = [emulator.webhook_secret]
            try:
                seed_objects(app.url, emulator, token, approver_token)
                seeded = app.requests
                print(
                    f"contract: app {app.url}, Stripe emulator {emulator.url}, "
                    f"{seeded} requests to seed objects",
                    flush=True,
                )
                command = [
                    str(Path(sys.executable).parent / "schemathesis"),
                    "run",
                    f"{app.url}/api/schema/?format=json",
                    "--url",
                    app.url,
                    "--header",
                    f"Authorization: Token {token}",
                    "--checks",
                    CHECKS,
                    "--phases",
                    args.phases,
                    "--seed",
                    str(args.seed),
                    "--max-examples",
                    str(args.max_examples),
                    "--workers",
                    "1",
                    "--generation-database",
                    "none",
                    "--request-timeout",
                    "60",
                    "--suppress-health-check",
                    "all",
                    "--no-color",
                    *args.extra,
                ]
                fuzz_started = time.monotonic()
                result = subprocess.run(command, check=False)  # noqa: S603
                fuzz_seconds = time.monotonic() - fuzz_started
                fuzzed = app.requests - seeded
            finally:
                emulator.stop()
        print(
            f"contract: {fuzzed} requests from schemathesis in {fuzz_seconds:.0f} s "
            f"({app.server_errors} answered 5xx); {time.monotonic() - started:.0f} s in all; "
            f"schemathesis exit code {result.returncode}",
            flush=True,
        )
        if app.server_errors:
            print("contract: the app answered 5xx: a failure whatever schemathesis says")
            return 1
        return result.returncode
    finally:
        if not args.keep_db:
            database_drop()


if __name__ == "__main__":
    sys.exit(main())
