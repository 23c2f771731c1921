"""Builders for Stripe events and signed webhook requests, shaped after tests/fixtures/stripe."""

from __future__ import annotations

import copy
import itertools
import json
import time
from functools import cache
from pathlib import Path
from typing import Any

from stripe_gateway.signature import signature_header

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "stripe"
SECRET = "whsec_test_primary"
OLD_SECRET = "whsec_test_rotated_out"
WEBHOOK_URL = "/webhooks/stripe/"
_counter = itertools.count(1)


@cache
def _fixture(name: str) -> str:
    return (FIXTURES / f"{name}.json").read_text()


def stripe_object(name: str) -> dict[str, Any]:
    """A fresh copy of tests/fixtures/stripe/<name>.json."""
    return json.loads(_fixture(name))


def make_event(
    event_type: str = "payment_intent.succeeded",
    obj: dict[str, Any] | None = None,
    *,
    event_id: str | None = None,
    created: int | None = None,
    livemode: bool = False,
    account: str | None = None,
    api_version: str | None = "2024-06-20",
) -> dict[str, Any]:
    """An event envelope as in event.json, with a payment object in `data.object`."""
    event = stripe_object("event")
    event["id"] = event_id or f"evt_test_{next(_counter):06d}_{time.time_ns() % 10**9}"
    event["type"] = event_type
    event["created"] = created if created is not None else int(time.time())
    event["livemode"] = livemode
    event["api_version"] = api_version
    event["data"] = {"object": copy.deepcopy(obj) if obj else stripe_object("payment_intent")}
    if account is not None:
        event["account"] = account
    return event


def encode(event: dict[str, Any]) -> bytes:
    return json.dumps(event, separators=(",", ":")).encode()


def signed(body: bytes, *secrets: str, timestamp: int | None = None) -> str:
    return signature_header(
        body, secrets or (SECRET,), int(time.time()) if timestamp is None else timestamp
    )


def post(client: Any, body: bytes, header: str | None, **extra: Any) -> Any:
    if header is not None:
        extra["HTTP_STRIPE_SIGNATURE"] = header
    return client.generic("POST", WEBHOOK_URL, body, content_type="application/json", **extra)


def deliver(client: Any, event: dict[str, Any], **kwargs: Any) -> Any:
    body = encode(event)
    return post(client, body, signed(body, **kwargs))
