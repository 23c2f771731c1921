"""Waiting for the webhook inbox to settle (the demo and end-to-end tests).

With chaos on, events arrive shuffled: a refund event before its payment is deferred with a
short backoff. `inbox_drain` waits for the emulator's deliveries, then re-runs every deferred
or failed event through the inbox's own `event_replay` until nothing is left in flight (or the
timeout passes), exactly what the sweeper would do later in production.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from stripe_gateway.models import StripeEvent
from stripe_gateway.services import EventBusy, event_replay

Status = StripeEvent.Status
IN_FLIGHT = (Status.RECEIVED, Status.DEFERRED, Status.FAILED, Status.PROCESSING)


@dataclass
class DrainResult:
    settled: bool
    replayed: int
    left: int


def inbox_pending() -> list[str]:
    """Events not yet terminal (failed-for-good ones included)."""
    return list(
        StripeEvent.objects.filter(status__in=IN_FLIGHT)
        .order_by("created", "id")
        .values_list("stripe_id", flat=True)
    )


def inbox_drain(*, emulator: Any = None, timeout: float = 60.0) -> DrainResult:
    deadline = time.monotonic() + timeout
    replayed = 0
    while True:
        if emulator is not None:
            emulator.flush(max(0.1, deadline - time.monotonic()))
        pending = inbox_pending()
        if not pending:
            return DrainResult(settled=True, replayed=replayed, left=0)
        if time.monotonic() > deadline:
            return DrainResult(settled=False, replayed=replayed, left=len(pending))
        progressed = False
        for stripe_id in pending:
            try:
                outcome = event_replay(event_id=stripe_id, fetch_missing=False)
            except EventBusy:
                continue
            replayed += 1
            progressed = progressed or outcome.status in (Status.PROCESSED, Status.IGNORED)
        if not progressed:
            time.sleep(0.05)
