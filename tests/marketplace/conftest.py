"""Fixtures of the marketplace tests: the Stripe-in-transaction guard (autouse), webhook
secrets, eager Celery (never publish to the shared Redis from tests), a Stripe gateway
pointed at a `responses` mock, and temporary handler registrations."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
import responses as responses_lib

from stripe_gateway.client import StripeGateway
from stripe_gateway.registry import HANDLERS, Registration
from tests.marketplace.helpers import OLD_SECRET, SECRET

API_BASE = "https://stripe.test"


@pytest.fixture(autouse=True)
def _guards(stripe_atomic_violations: list[str], celery_eager: None) -> None:
    """Every test here: no Stripe call inside a transaction, Celery inline (tests/conftest.py)."""


@pytest.fixture(autouse=True)
def stripe_settings(settings: Any) -> Any:
    settings.STRIPE_WEBHOOK_SECRETS = [SECRET, OLD_SECRET]
    settings.STRIPE_WEBHOOK_TOLERANCE = 300
    settings.STRIPE_WEBHOOK_MAX_BODY = 64 * 1024
    settings.STRIPE_API_KEY = "sk_test_marketplace"
    settings.STRIPE_API_BASE = API_BASE
    settings.STRIPE_MAX_NETWORK_RETRIES = 0
    settings.STRIPE_EVENTS_MAX_ATTEMPTS = 3
    settings.STRIPE_EVENTS_BACKOFF_BASE = 10.0
    settings.STRIPE_EVENTS_BACKOFF_MAX = 60.0
    return settings


@pytest.fixture
def mock_stripe(settings: Any) -> Iterator[responses_lib.RequestsMock]:
    # `responses` intercepts `requests`' adapter: the gateways of a test that mocks Stripe
    # with it use the `requests` transport (STRIPE_HTTP_CLIENT; the default, urllib3, is
    # tested against the emulator: tests/stripe_gateway/test_transport.py).
    settings.STRIPE_HTTP_CLIENT = "requests"
    with responses_lib.RequestsMock(assert_all_requests_are_fired=True) as rsps:
        yield rsps


@pytest.fixture
def gateway() -> StripeGateway:
    return StripeGateway(
        api_key="sk_test_marketplace",
        api_base=API_BASE,
        max_network_retries=0,
        http_client="requests",  # mocked with `responses` (mock_stripe)
    )


@pytest.fixture
def register_handler(monkeypatch: pytest.MonkeyPatch) -> Callable[..., None]:
    """register_handler("type", apply, prepare=None): a handler for this test only."""

    def register(event_type: str, apply: Callable[..., Any], prepare: Any = None) -> None:
        monkeypatch.setitem(
            HANDLERS, event_type, Registration(event_type=event_type, apply=apply, prepare=prepare)
        )

    return register
