"""Fixtures of the ledger tests. Every test runs on PostgreSQL; `write_path` runs a test on
both write paths (the one-statement PostgreSQL function and the portable Python path)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from django.db import connection
from rest_framework.test import APIClient

from ledger.services import script_reads, scripts
from tests.auth import make_user, session_client
from tests.auth import token_client as _token_client


@pytest.fixture(autouse=True)
def _ledger_settings(settings) -> None:
    # No Celery broker round trips from tests: the sealer is called explicitly.
    settings.LEDGER_SEAL_ON_COMMIT = False


@pytest.fixture(params=["postgres", "portable"])
def write_path(request, settings) -> str:
    """Run the test once per write path."""
    settings.LEDGER_WRITE_PATH = request.param
    return request.param


@pytest.fixture
def staff_client(db) -> APIClient:
    """A Finance admin (may post, revert and set account metadata) signed in."""
    return session_client(make_user("finance", roles=["Finance admin"]))


@pytest.fixture
def token_client(db) -> APIClient:
    """A service account (not staff) holding the ledger's permissions, by API token."""
    user = make_user(
        "svc-ledger",
        staff=False,
        perms=[
            "ledger.view_transaction",
            "ledger.view_account",
            "ledger.post_transaction",
            "ledger.revert_transaction",
            "ledger.set_account_metadata",
        ],
    )
    return _token_client(user)


@pytest.fixture
def superuser_cursor() -> Iterator[None]:
    """Run with the ledger's triggers disabled (as the superuser the tests connect as) and
    always restore them."""
    with connection.cursor() as cursor:
        cursor.execute("SET session_replication_role = replica")
    try:
        yield
    finally:
        with connection.cursor() as cursor:
            cursor.execute("RESET session_replication_role")


@pytest.fixture
def reads(monkeypatch) -> list[tuple]:
    """Every read the fast path makes (script_reads._read calls)."""
    calls: list[tuple] = []
    real_read = script_reads._read

    def counted(*args):
        calls.append(args)
        return real_read(*args)

    monkeypatch.setattr(script_reads, "_read", counted)
    return calls


@pytest.fixture
def speculative_writes(monkeypatch) -> list[bool]:
    """One entry per speculative attempt that reached the write: True if it held."""
    outcomes: list[bool] = []
    real_done = scripts.speculation_done

    def recorded(program, *, hit):
        outcomes.append(hit)
        return real_done(program, hit=hit)

    monkeypatch.setattr(scripts, "speculation_done", recorded)
    return outcomes
