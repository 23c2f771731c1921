"""Fixtures of the ledger tests. Every test runs on PostgreSQL; `write_path` runs a test on
both write paths (the one-statement PostgreSQL function and the portable Python path)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from django.contrib.auth import get_user_model
from django.db import connection
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient


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
    user = get_user_model().objects.create_user("finance", password="x", is_staff=True)
    client = APIClient()
    client.force_authenticate(user)
    return client


@pytest.fixture
def token_client(db) -> APIClient:
    user = get_user_model().objects.create_user("svc-marketplace", password="x")
    token = Token.objects.create(user=user)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {token.key}")
    return client


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
