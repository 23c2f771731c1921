"""Anomalies: what the money flows refuse to guess about, recorded for staff (one row per
kind and Stripe object; redeliveries add nothing)."""

from __future__ import annotations

import logging
from typing import Any

from django.db import IntegrityError, transaction

from marketplace.models import Anomaly, Order

logger = logging.getLogger(__name__)


def anomaly_record(
    *,
    kind: str,
    message: str,
    stripe_object: str = "",
    stripe_event_id: str = "",
    order: Order | None = None,
    details: dict[str, Any] | None = None,
) -> Anomaly:
    """Record (or find) the anomaly and log a warning. Safe inside a transaction."""
    logger.warning("marketplace anomaly %s %s: %s", kind, stripe_object, message)
    if stripe_object:
        existing = Anomaly.objects.filter(kind=kind, stripe_object=stripe_object).first()
        if existing is not None:
            return existing
    try:
        with transaction.atomic():
            return Anomaly.objects.create(
                kind=kind,
                message=message,
                stripe_object=stripe_object,
                stripe_event_id=stripe_event_id,
                order=order,
                details=details or {},
            )
    except IntegrityError:
        found = Anomaly.objects.filter(kind=kind, stripe_object=stripe_object).first()
        if found is None:
            raise
        return found
