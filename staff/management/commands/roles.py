"""`manage.py roles` prints each role and its permissions; `roles sync` applies them again."""

from typing import Any

from django.contrib.auth.models import Group, Permission
from django.core.management.base import BaseCommand, CommandParser

from staff.roles import ROLES, roles_sync


class Command(BaseCommand):
    help = "Show the staff roles (groups) and their permissions, or sync them."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("action", nargs="?", choices=["show", "sync"], default="show")

    def handle(self, *args: Any, **options: Any) -> None:
        if options["action"] == "sync":
            counts = roles_sync(group_model=Group, permission_model=Permission)
            for role, n in counts.items():
                self.stdout.write(f"{role}: {n} permission(s)")
            return
        for role, names in ROLES.items():
            self.stdout.write(f"{role}:")
            for name in sorted(set(names)):
                self.stdout.write(f"  {name}")
