"""End-to-end harness: the Stripe emulator delivering signed webhooks to the app served by
pytest-django's `live_server`, and the customer's side of a payment (confirming the
PaymentIntent at the emulator, as the app's front end would)."""

from __future__ import annotations

from typing import Any

import pytest

from demo.inbox import inbox_drain
from ledger.selectors import balance_get, transactions_list
from stripe_emulator import ChaosConfig, EmulatorServer
from stripe_gateway.client import StripeGateway
from stripe_gateway.errors import CardDeclined
from tests.marketplace.helpers import SECRET

USD = "USD/2"


@pytest.fixture
def emulator(emulator_factory: Any, live_server: Any, settings: Any) -> EmulatorServer:
    server = emulator_factory(
        webhook_url=live_server.url + "/webhooks/stripe/",
        webhook_secret=SECRET,
        chaos=ChaosConfig(seed=11),
    )
    settings.CELERY_TASK_ALWAYS_EAGER = True
    settings.MARKETPLACE_DEFER_SECONDS = 0.05
    settings.STRIPE_EVENTS_MAX_ATTEMPTS = 50
    return server


def customer_pays(server: EmulatorServer, intent_id: str, pm: str = "pm_card_visa") -> bool:
    """Confirm the PaymentIntent at the emulator; False if the card was declined."""
    gateway = StripeGateway(api_key="sk_test_customer", api_base=server.url, max_network_retries=0)
    try:
        gateway.payment_intent_confirm(
            payment_intent_id=intent_id, payment_method=pm, idempotency_key=f"confirm:{intent_id}"
        )
    except CardDeclined:
        return False
    return True


def settle(server: EmulatorServer, timeout: float = 30.0) -> None:
    result = inbox_drain(emulator=server, timeout=timeout)
    assert result.settled, f"{result.left} event(s) still in flight"


def bal(address: str) -> int:
    return balance_get(address=address, asset=USD)


def ledger_tx(reference: str) -> Any:
    return transactions_list(reference=reference).first()


def postings(reference: str) -> list[tuple[str, str, int]]:
    tx = ledger_tx(reference)
    assert tx is not None, f"no ledger transaction {reference}"
    return [(p.source.address, p.destination.address, p.amount) for p in tx.postings.all()]
