"""`python manage.py demo`: the product on its embedded default (what `make demo` runs)."""

import requests
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError

from ops.server import AppServer


class Command(BaseCommand):
    help = "Migrate, start the app on loopback, and play the demo day through real HTTP paths."

    def add_arguments(self, parser):
        parser.add_argument("--orders", type=int, default=300)
        parser.add_argument("--seed", type=int, default=42)

    def handle(self, *args, orders, seed, **options):
        call_command("migrate", verbosity=0, interactive=False)
        with AppServer() as server:
            response = requests.get(f"{server.url}/healthz", timeout=5)
            self.stdout.write(f"app at {server.url}: /healthz -> {response.status_code} {response.text}")
            if response.status_code != 200:
                raise CommandError("the app is not healthy")
