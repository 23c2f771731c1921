"""Shared fixtures. Tests run against real PostgreSQL and Redis (see `make test`).

The folders whose code reaches Stripe (marketplace, payouts, reconciliation) turn the two
guards below on for every test with an autouse fixture in their own conftest."""

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from config.celery import app as celery_app
from stripe_emulator import EmulatorServer
from stripe_gateway.testing import stripe_calls_forbidden_in_atomic


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


EmulatorFactory = Callable[..., EmulatorServer]


@pytest.fixture
def emulator_factory(settings: Any) -> Iterator[EmulatorFactory]:
    """Start a local Stripe emulator (`EmulatorServer(**options)`) and, unless
    `point_app=False`, point the app's Stripe gateway at it (`STRIPE_API_BASE`, and
    `STRIPE_API_KEY` when `api_key` is given). Every emulator started is stopped after the
    test. Each test folder's `emulator` fixture is one call of this."""
    servers: list[EmulatorServer] = []

    def start(
        *, point_app: bool = True, api_key: str | None = None, **options: Any
    ) -> EmulatorServer:
        server = EmulatorServer(**options)
        servers.append(server)
        server.start()
        if point_app:
            settings.STRIPE_API_BASE = server.url
            if api_key is not None:
                settings.STRIPE_API_KEY = api_key
        return server

    try:
        yield start
    finally:
        for server in reversed(servers):
            server.stop()
