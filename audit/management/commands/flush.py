"""`flush`, aware of the append-only triggers (the ledger's and the audit trail's).

The ledger's tables (ledger/pgsql.py) and the audit trail (audit/pgsql.py) refuse TRUNCATE,
so Django's `flush` (which test cases with `transaction=True` run after each test) would fail
on PostgreSQL. It lives in `audit` and `ledger` re-exports it, because a test case with
`available_apps` only sees the commands of the apps it lists. On a test database
(named `test_...` by the test runner) outside production, this override runs the flush with
`session_replication_role = replica`, which disables ordinary
triggers for this session only and can only be set by a superuser, who could disable the
triggers anyway. In production, or for a role that may not set it, the triggers stand and the
flush is refused, as it should be.
"""

from typing import Any

from django.conf import settings
from django.core.management.commands import flush
from django.db import DatabaseError, connections


class Command(flush.Command):
    def handle(self, **options: Any) -> None:
        connection = connections[options.get("database") or "default"]
        bypass = False
        if (
            connection.vendor == "postgresql"
            and getattr(settings, "DJANGO_ENV", "") != "production"
            and str(connection.settings_dict.get("NAME", "")).startswith("test_")
        ):
            try:
                with connection.cursor() as cursor:
                    cursor.execute("SET session_replication_role = replica")
                bypass = True
            except DatabaseError:
                bypass = False  # not a superuser: the triggers will refuse the TRUNCATE
        try:
            super().handle(**options)
        finally:
            if bypass:
                with connection.cursor() as cursor:
                    cursor.execute("RESET session_replication_role")
