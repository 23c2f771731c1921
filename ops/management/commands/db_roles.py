"""`manage.py db_roles`: create or update the owner and app roles and every grant (idempotent).

Run as a superuser (or a role with CREATEROLE owning the objects), after `migrate`:

    DB_ROLE=owner python manage.py migrate && python manage.py db_roles --owner eats_owner \\
        --app eats_app

Passwords come from the environment (DB_OWNER_PASSWORD, DB_APP_PASSWORD), never argv.
"""

import os

from django.core.management.base import BaseCommand, CommandError
from django.db import connection, transaction

from ops.db_roles import roles_apply


class Command(BaseCommand):
    help = "Create/update the owner (migrations) and app (runtime) PostgreSQL roles and grants."

    def add_arguments(self, parser):
        parser.add_argument("--owner", default=os.environ.get("DB_OWNER_ROLE", "eats_owner"))
        parser.add_argument("--app", default=os.environ.get("DB_APP_ROLE", "eats_app"))

    def handle(self, *args, **options):
        if connection.vendor != "postgresql":
            raise CommandError("db_roles needs PostgreSQL (DATABASE_URL)")
        with transaction.atomic(), connection.cursor() as cursor:
            report = roles_apply(
                cursor.cursor,
                database=connection.settings_dict["NAME"],
                owner=options["owner"],
                app=options["app"],
                owner_password=os.environ.get("DB_OWNER_PASSWORD") or None,
                app_password=os.environ.get("DB_APP_PASSWORD") or None,
            )
        self.stdout.write(
            f"roles ok: owner={report.owner} app={report.app} tables={report.tables} "
            f"append-only={','.join(report.append_only)} reassigned={report.reassigned}"
        )
