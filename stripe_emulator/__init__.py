"""A small stateful local Stripe API for the demo and end-to-end tests.

Owns: an HTTP emulation of the Stripe v1 endpoints our payments code uses (customers,
Connect accounts, PaymentIntents, charges, refunds, disputes, transfers and reversals,
payouts, top-ups, balance, balance transactions, events), signed webhook delivery and
chaos switches. The real `stripe` client talks to it over loopback.

Must not import: Django or anything from this project. Production code never imports it.
"""

from .config import ChaosConfig
from .server import DEFAULT_WEBHOOK_SECRET, EmulatorServer
from .state import EmulatorState, card_fee
from .webhooks import sign

__all__ = [
    "DEFAULT_WEBHOOK_SECRET",
    "ChaosConfig",
    "EmulatorServer",
    "EmulatorState",
    "card_fee",
    "sign",
]
