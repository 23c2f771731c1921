"""`manage.py stripe_webhooks setup|check --url URL [--connect-url URL] [--secret-dir DIR]`.

setup  creates the platform and Connect webhook endpoints at Stripe, or sets exactly the
       events the handlers need on the existing ones, at the pinned API version; a new
       endpoint's signing secret is written to DIR/<role>.whsec (0600) and its path printed.
check  compares the endpoints at Stripe with what the handlers need and names what is
       missing (exit status 1 when anything is).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from stripe_gateway.client import PINNED_API_VERSION, get_gateway
from stripe_gateway.endpoints import Role, endpoints_check, endpoints_setup
from stripe_gateway.errors import PaymentProviderError


class Command(BaseCommand):
    help = "Create/update (setup) or verify (check) the Stripe webhook endpoints."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("mode", choices=("setup", "check"))
        parser.add_argument("--url", required=True, help="the platform endpoint's URL")
        parser.add_argument(
            "--connect-url", help="the Connect endpoint's URL (default: the same URL)"
        )
        parser.add_argument(
            "--secret-dir", default="var/stripe_webhook_secrets", help="where new secrets go"
        )

    def handle(self, *args: Any, **options: Any) -> None:
        urls: dict[Role, str] = {
            "platform": options["url"],
            "connect": options["connect_url"] or options["url"],
        }
        try:
            if options["mode"] == "setup":
                reports = endpoints_setup(
                    gateway=get_gateway(), urls=urls, secret_dir=Path(options["secret_dir"])
                )
            else:
                reports = endpoints_check(gateway=get_gateway(), urls=urls)
        except PaymentProviderError as exc:
            raise CommandError(f"Stripe: {exc.code}: {exc}") from None
        problems = 0
        for report in reports:
            self.stdout.write(
                f"{report.role:8} {report.action:9} {report.endpoint_id or '-':30} "
                f"{report.url} api_version={report.api_version or '-'}"
            )
            if report.missing:
                problems += 1
                self.stdout.write(f"  missing events: {', '.join(report.missing)}")
            if report.extra:
                self.stdout.write(f"  events not handled: {', '.join(report.extra)}")
            if report.endpoint_id and report.api_version != PINNED_API_VERSION:
                problems += 1
                self.stdout.write(
                    f"  api_version {report.api_version or '(account default)'} is not the "
                    f"pinned {PINNED_API_VERSION}: run setup (a new endpoint is created)"
                )
            if report.secret_path:
                self.stdout.write(
                    f"  signing secret written to {report.secret_path}: store it where the "
                    "app reads STRIPE_WEBHOOK_SECRET (e.g. AWS Secrets Manager), then delete it"
                )
        if options["mode"] == "check" and problems:
            raise CommandError(f"{problems} endpoint(s) not as the handlers need")
