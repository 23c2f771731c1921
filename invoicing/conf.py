"""Invoicing settings with their defaults (override any of them in Django settings).

INVOICING_SERVICES_TAX_BPS   tax rate of the platform's services (commission / service fee,
                             delivery), basis points; None = not configured: issuing stops
                             with an anomaly (2000, i.e. 20%)
INVOICING_RIDER_TAX_BPS      tax rate on riders' self-billed delivery earnings (0)
INVOICING_MERCHANT_MODE_TRUST  policy: an order of a restaurant whose trust level is at least
                             this uses model C whatever its default (None: off)
INVOICING_SWEEP_SECONDS      Celery beat cadence of the sweep (60)
INVOICING_SWEEP_BATCH        orders per issuing transaction (1000)
INVOICING_FAST_PATH          on PostgreSQL, read and write documents with array parameters
                             and COPY (invoicing/bulk.py); False: the portable path (True)
INVOICING_PLATFORM           the platform's legal details printed on documents
"""

from __future__ import annotations

from typing import Any

from django.conf import settings

DEFAULTS: dict[str, Any] = {
    "INVOICING_SERVICES_TAX_BPS": 2000,
    "INVOICING_RIDER_TAX_BPS": 0,
    "INVOICING_MERCHANT_MODE_TRUST": None,
    "INVOICING_SWEEP_SECONDS": 60.0,
    "INVOICING_SWEEP_BATCH": 1000,
    "INVOICING_FAST_PATH": True,
    "INVOICING_PLATFORM": {
        "name": "Eats Marketplace SAS",
        "address": "1 Market Street, 75001 Paris",
        "tax_id": "FR00123456789",
    },
}


def get(name: str) -> Any:
    return getattr(settings, name, DEFAULTS[name])
