"""Shared fixtures. Tests run against real PostgreSQL and Redis (see `make test`).

The folders whose code reaches Stripe (marketplace, payouts, reconciliation) turn the two
guards below on for every test with an autouse fixture in their own conftest."""

from collections.abc import Iterator

import pytest

from config.celery import app as celery_app
from marketplace.testing import stripe_calls_forbidden_in_atomic


@pytest.fixture
def stripe_atomic_violations() -> Iterator[list[str]]:
    """Fails any test in which a Stripe call happened inside an open transaction."""
    with stripe_calls_forbidden_in_atomic() as violations:
        yield violations
    if violations:
        pytest.fail("Stripe called inside a database transaction: " + "; ".join(violations))


@pytest.fixture
def celery_eager() -> Iterator[None]:
    """Run Celery tasks inline: tests never publish to the shared Redis."""
    conf = celery_app.conf
    saved = (conf.task_always_eager, conf.task_eager_propagates)
    conf.task_always_eager, conf.task_eager_propagates = True, True
    yield
    conf.task_always_eager, conf.task_eager_propagates = saved
