"""Fixtures of the reconciliation tests: the Stripe-in-transaction guard (autouse), eager
Celery (the ledger's sealer schedules after commits; never publish to the shared Redis from
tests), and settings pointing the Stripe seam nowhere unless a test starts the emulator."""

from __future__ import annotations

from typing import Any

import pytest


@pytest.fixture(autouse=True)
def _guards(stripe_atomic_violations: list[str], celery_eager: None) -> None:
    """Every test here: no Stripe call inside a transaction, Celery inline (tests/conftest.py)."""


@pytest.fixture(autouse=True)
def recon_settings(settings: Any) -> Any:
    settings.STRIPE_API_KEY = "sk_test_reconciliation"
    settings.STRIPE_API_BASE = "http://127.0.0.1:9"  # nothing listens: a stray call fails fast
    settings.STRIPE_MAX_NETWORK_RETRIES = 0
    settings.STRIPE_TIMEOUT = 5.0
    settings.RECONCILIATION_GRACE_SECONDS = 2 * 24 * 3600
    return settings
