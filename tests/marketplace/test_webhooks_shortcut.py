"""The webhook's short way through the middleware stack: same answers, none of the people's
middleware (sessions, CSRF, messages, frame options), the request id and security still on."""

from __future__ import annotations

from typing import Any

import pytest
from django.test import Client

from stripe_gateway import services
from stripe_gateway.models import StripeEvent
from tests.marketplace.helpers import encode, make_event, post, signed

pytestmark = pytest.mark.django_db


def test_a_delivery_skips_the_people_middleware_but_keeps_the_request_id(
    client: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    # given
    scheduled: list[str] = []
    monkeypatch.setattr(services, "event_schedule", scheduled.append)
    body = encode(make_event("charge.succeeded"))

    # when
    response = post(client, body, signed(body), HTTP_X_REQUEST_ID="req-webhook-1")

    # then: stored and answered as before, by the same view
    assert response.status_code == 200, response.content
    assert response.json() == {"received": True, "duplicate": False}
    assert StripeEvent.objects.count() == 1
    assert response["X-Request-ID"] == "req-webhook-1"
    assert response.cookies == {}
    assert "X-Frame-Options" not in response
    assert "Cookie" not in response.get("Vary", "")


def test_other_paths_still_go_through_the_whole_stack(client: Client) -> None:
    response: Any = client.get("/healthz")

    assert response.status_code == 200
    assert response["X-Frame-Options"] == "DENY"
    assert response["X-Request-ID"]


def test_a_bad_query_string_on_the_webhook_is_still_refused_first(client: Client) -> None:
    body = encode(make_event("charge.succeeded"))

    response = client.generic(
        "POST",
        "/webhooks/stripe/?x=%00",
        body,
        content_type="application/json",
        HTTP_STRIPE_SIGNATURE=signed(body),
    )

    assert response.status_code == 400
    assert StripeEvent.objects.count() == 0
