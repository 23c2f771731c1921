"""Fixtures of the payouts tests: the Stripe-in-transaction guard (autouse), eager Celery,
settings, and a started Stripe emulator the app talks to over HTTP (with its chaos switches).

Tests that need threads or a worker subprocess use `transaction=True` with `available_apps`
that leave out the ledger: its tables refuse TRUNCATE by design, so ledger rows of those tests
stay in the test database (assertions use accounts created by the test, or deltas)."""

from __future__ import annotations

from typing import Any

import pytest

from stripe_emulator import ChaosConfig, EmulatorServer

API_KEY = "sk_test_payouts"
TRANSACTIONAL_APPS = [
    "payouts",
    "marketplace",
    "stripe_gateway",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.admin",
    "django.contrib.sessions",
    "knox",
    "audit",
]


@pytest.fixture(autouse=True)
def _guards(stripe_atomic_violations: list[str], celery_eager: None) -> None:
    """Every test here: no Stripe call inside a transaction, Celery inline (tests/conftest.py)."""


@pytest.fixture(autouse=True)
def payouts_settings(settings: Any) -> Any:
    settings.LEDGER_SEAL_ON_COMMIT = False
    settings.STRIPE_API_KEY = API_KEY
    settings.STRIPE_API_BASE = "http://127.0.0.1:9"  # nothing listens: use the emulator fixture
    settings.STRIPE_MAX_NETWORK_RETRIES = 0
    settings.STRIPE_TIMEOUT = 5.0
    settings.PAYOUTS_MIN_AMOUNT = 100
    settings.PAYOUTS_ROLLING_RESERVE_BPS = 0
    settings.PAYOUTS_LEASE_SECONDS = 300.0
    settings.PAYOUTS_DRIVE_BATCH = 50
    return settings


@pytest.fixture
def chaos() -> ChaosConfig:
    return ChaosConfig(seed=11)


@pytest.fixture
def emulator(emulator_factory: Any, chaos: ChaosConfig) -> EmulatorServer:
    """A local Stripe with a large available platform balance; the app points at it."""
    server = emulator_factory(port=0, chaos=chaos)
    status, body = server.request(
        "POST", "/v1/topups", {"amount": 50_000_000, "currency": "usd"}, api_key=API_KEY
    )
    assert status == 200, body
    return server
