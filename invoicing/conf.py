"""Invoicing settings: declared here (name, default, meaning), read from the environment once
by config/settings.py (`config.knobs`), read by the code through `get`.

INVOICING_SERVICES_TAX_BPS   tax rate of the platform's services (commission / service fee,
                             delivery), basis points; null = not configured: issuing stops
                             with an anomaly (JSON: 2000, i.e. 20%)
INVOICING_RIDER_TAX_BPS      tax rate on riders' self-billed delivery earnings (0)
INVOICING_MERCHANT_MODE_TRUST  policy: an order of a restaurant whose trust level is at least
                             this uses model C whatever its default (JSON; null: off)
INVOICING_SWEEP_SECONDS      Celery beat cadence of the sweep (60)
INVOICING_SWEEP_BATCH        orders per issuing transaction (1000)
INVOICING_FAST_PATH          on PostgreSQL, read and write documents with array parameters
                             and COPY (invoicing/bulk.py); False: the portable path (True)
INVOICING_PLATFORM_NAME      the platform's legal details printed on documents: name,
INVOICING_PLATFORM_ADDRESS   address and tax identifier (read together as
INVOICING_PLATFORM_TAX_ID    `get("INVOICING_PLATFORM")`, {"name", "address", "tax_id"})
"""

from __future__ import annotations

from typing import Any

from django.conf import settings

from config.knobs import Knob, knobs_defaults

KNOBS: dict[str, Knob] = {
    "INVOICING_SERVICES_TAX_BPS": Knob(2000, "json", "services' tax, bps (null: not set)"),
    "INVOICING_RIDER_TAX_BPS": Knob(0, "int", "riders' self-billed earnings tax, bps"),
    "INVOICING_MERCHANT_MODE_TRUST": Knob(None, "json", "trust level for model C (null: off)"),
    "INVOICING_SWEEP_SECONDS": Knob(60.0, "float", "beat cadence of the issuing sweep"),
    "INVOICING_SWEEP_BATCH": Knob(1000, "int", "orders per issuing transaction"),
    "INVOICING_FAST_PATH": Knob(True, "bool", "arrays and COPY on PostgreSQL"),
    "INVOICING_PLATFORM_NAME": Knob("Eats Marketplace SAS", "str", "platform's legal name"),
    "INVOICING_PLATFORM_ADDRESS": Knob(
        "1 Market Street, 75001 Paris", "str", "platform's legal address"
    ),
    "INVOICING_PLATFORM_TAX_ID": Knob("FR00123456789", "str", "platform's tax identifier"),
}
DEFAULTS: dict[str, Any] = knobs_defaults(KNOBS)


def get(name: str) -> Any:
    if name == "INVOICING_PLATFORM":
        return {
            "name": get("INVOICING_PLATFORM_NAME"),
            "address": get("INVOICING_PLATFORM_ADDRESS"),
            "tax_id": get("INVOICING_PLATFORM_TAX_ID"),
        }
    return getattr(settings, name, DEFAULTS[name])
