"""Create the benchmark database named by DATABASE_URL if it is missing, then migrate it."""

from typing import Any

from django.core.management import call_command
from django.core.management.base import BaseCommand
from django.db import connection


class Command(BaseCommand):
    help = "Create (PostgreSQL) and migrate the database DATABASE_URL points to."

    def handle(self, *args, **options):
        if connection.vendor == "postgresql":
            import psycopg

            settings_dict = connection.settings_dict
            name = settings_dict["NAME"]
            params: dict[str, Any] = {
                "host": settings_dict.get("HOST") or "127.0.0.1",
                "port": settings_dict.get("PORT") or 5432,
                "user": settings_dict.get("USER") or "postgres",
                "dbname": "postgres",
                "autocommit": True,
            }
            if settings_dict.get("PASSWORD"):
                params["password"] = settings_dict["PASSWORD"]
            with psycopg.connect(**params) as admin:
                exists = admin.execute(
                    "SELECT 1 FROM pg_database WHERE datname = %s", [name]
                ).fetchone()
                if not exists:
                    admin.execute(f'CREATE DATABASE "{name}"')
        call_command("migrate", verbosity=0, interactive=False)
