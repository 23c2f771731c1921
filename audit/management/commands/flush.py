"""`flush`, aware of the append-only triggers (the ledger's and the audit trail's).

The ledger's tables (ledger/pgsql.py) and the audit trail (audit/pgsql.py) refuse TRUNCATE,
so Django's `flush` (which test cases with `transaction=True` run after each test) would fail
on PostgreSQL. It lives in `audit` and `ledger` re-exports it, because a test case with
`available_apps` only sees the commands of the apps it lists.

On a test database (named `test_...` by the test runner) outside production, the flush runs
with `session_replication_role = replica`, which disables ordinary triggers and can only be
set by a superuser, who could disable the triggers anyway. It is set with SET LOCAL inside the
flush's own transaction, so nothing outlives it: behind PgBouncer in transaction pooling mode a
session-level SET would reach another client's connection. In production, or for a role that
may not set it, the triggers stand and the flush is refused, as it should be.
"""

from typing import Any

from django.conf import settings
from django.core.management.commands import flush
from django.db import DatabaseError, connections, transaction


class Command(flush.Command):
    def handle(self, **options: Any) -> None:
        connection = connections[options.get("database") or "default"]
        eligible = (
            connection.vendor == "postgresql"
            and getattr(settings, "DJANGO_ENV", "") != "production"
            and str(connection.settings_dict.get("NAME", "")).startswith("test_")
        )
        with transaction.atomic(using=connection.alias):
            if eligible:
                try:
                    with transaction.atomic(using=connection.alias), connection.cursor() as cursor:
                        cursor.execute("SET LOCAL session_replication_role = replica")
                except DatabaseError:
                    pass  # not a superuser: the triggers will refuse the TRUNCATE
            super().handle(**options)
