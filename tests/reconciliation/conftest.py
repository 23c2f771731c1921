"""Fixtures of the reconciliation tests: the Stripe-in-transaction guard (autouse), eager
Celery (the ledger's sealer schedules after commits; never publish to the shared Redis from
tests), and settings pointing the Stripe seam nowhere unless a test starts the emulator."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from config.celery import app as celery_app
from marketplace.testing import stripe_calls_forbidden_in_atomic


@pytest.fixture(autouse=True)
def stripe_atomic_violations() -> Iterator[list[str]]:
    """Fails any test in which a Stripe call happened inside an open transaction."""
    with stripe_calls_forbidden_in_atomic() as violations:
        yield violations
    if violations:
        pytest.fail("Stripe called inside a database transaction: " + "; ".join(violations))


@pytest.fixture(autouse=True)
def celery_eager() -> Iterator[None]:
    conf = celery_app.conf
    saved = (conf.task_always_eager, conf.task_eager_propagates)
    conf.task_always_eager, conf.task_eager_propagates = True, True
    yield
    conf.task_always_eager, conf.task_eager_propagates = saved


@pytest.fixture(autouse=True)
def recon_settings(settings: Any) -> Any:
    settings.STRIPE_API_KEY = "sk_test_reconciliation"
    settings.STRIPE_API_BASE = "http://127.0.0.1:9"  # nothing listens: a stray call fails fast
    settings.STRIPE_MAX_NETWORK_RETRIES = 0
    settings.STRIPE_TIMEOUT = 5.0
    settings.RECONCILIATION_GRACE_SECONDS = 2 * 24 * 3600
    return settings
