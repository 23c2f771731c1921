"""Invoicing tests: real PostgreSQL, eager Celery, no Stripe call inside a transaction."""

from __future__ import annotations

from typing import Any

import pytest


@pytest.fixture(autouse=True)
def _guards(stripe_atomic_violations: list[str], celery_eager: None) -> None:
    """tests/conftest.py's guards."""


@pytest.fixture(autouse=True)
def invoicing_settings(settings: Any) -> Any:
    settings.INVOICING_SERVICES_TAX_BPS = 2000
    settings.INVOICING_RIDER_TAX_BPS = 0
    settings.INVOICING_MERCHANT_MODE_TRUST = None
    return settings


@pytest.fixture(params=[True, False], ids=["fast", "portable"])
def both_paths(request: Any, settings: Any) -> bool:
    """Run the test on PostgreSQL's fast path (array parameters, COPY) and on the portable
    path the demo's SQLite uses (invoicing/bulk.py)."""
    settings.INVOICING_FAST_PATH = request.param
    return bool(request.param)
