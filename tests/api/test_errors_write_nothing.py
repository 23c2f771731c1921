"""After every erroring write request nothing was written: every write operation of the schema
receives a sample of hostile bodies (NUL bytes, numbers beyond bigint, wrong types, values the
database's constraints refuse, each documented field in turn), and for every answer >= 400 the
row count of every table and the ledger's sums per asset are unchanged. No answer is a 500."""

from __future__ import annotations

import re
from typing import Any

import pytest
from rest_framework.test import APIClient

from ledger.services import transaction_post
from payouts.models import Payout
from payouts.services import payouts_schedule
from tests.auth import make_user, token_client
from tests.marketplace.factories import CampaignFactory, RestaurantFactory, RiderFactory
from tests.marketplace.fakes import FakeGateway, fake_gateway
from tests.marketplace.flows import pay, placed_order
from tests.payouts.helpers import key, make_payee
from tests.snapshots import db_snapshot

__all__ = ["fake_gateway"]

pytestmark = [pytest.mark.django_db, pytest.mark.slow]

HOSTILE_VALUES: list[Any] = ["\x00", "ÙK", 2**63, -(2**63) - 1, -1, 0, "", [], {}, None, True]
HOSTILE_BODIES: list[Any] = ["not an object", [], {"\x00": 1}, {"amount": 10**30}]


@pytest.fixture(autouse=True)
def _guards(stripe_atomic_violations: list[str], celery_eager: None, settings: Any) -> None:
    settings.LEDGER_SEAL_ON_COMMIT = False


def _schema(client: APIClient) -> dict[str, Any]:
    return dict(client.get("/api/schema/", {"format": "json"}).json())


def _properties(schema: dict[str, Any], op: dict[str, Any]) -> dict[str, Any]:
    body = op.get("requestBody", {}).get("content", {}).get("application/json", {})
    node = body.get("schema", {})
    while "$ref" in node:
        node = schema["components"]["schemas"][node["$ref"].rsplit("/", 1)[1]]
    return dict(node.get("properties", {}))


def _bodies(schema: dict[str, Any], op: dict[str, Any]) -> list[Any]:
    """A sample of bodies each operation must refuse or accept without a 500."""
    props = _properties(schema, op)
    sane = {name: (1 if p.get("type") == "integer" else "x") for name, p in props.items()}
    bodies: list[Any] = list(HOSTILE_BODIES)
    for name in props:
        for value in HOSTILE_VALUES:
            bodies.append({**sane, name: value})
    return bodies


def test_erroring_write_requests_write_nothing(fake_gateway: FakeGateway) -> None:
    # given: a marketplace with objects for every path, and a caller holding every permission
    restaurant = RestaurantFactory()
    RiderFactory()
    campaign = CampaignFactory(funding=0)
    transaction_post(
        postings=[
            {
                "source": "world",
                "destination": "platform:marketing",
                "asset": "USD/2",
                "amount": 10**7,
            }
        ]
    )
    order, intent = placed_order(
        fake_gateway, restaurant_id=restaurant.pk, subtotal=4000, delivery_fee=600
    )
    pay(fake_gateway, order, intent)
    payee = make_payee("restaurant", balance=5_000)
    payouts_schedule(payee_ids=[key(payee)], drive=False)
    payout = Payout.objects.get(payee_address=payee.ledger_address)
    ids = {
        "id": str(order.pk),
        "transaction_id": "1",
        "payout_id": str(payout.pk),
        "kind": "restaurant",
        "payee_id": str(payee.pk),
        "address": "platform:marketing",
        "key": "tier",
    }
    client = token_client(make_user("root", superuser=True))
    schema = _schema(client)
    writes = [
        (path, method, op)
        for path, ops in schema["paths"].items()
        for method, op in ops.items()
        if method in {"post", "delete"}
    ]
    assert len(writes) >= 25
    refused = 0

    for path, method, op in writes:
        url = re.sub(r"\{(\w+)\}", lambda m: ids[m.group(1)], path)
        if "/campaigns/{id}" in path:
            url = path.replace("{id}", str(campaign.pk))
        for body in _bodies(schema, op):
            # when
            before = db_snapshot()
            response = getattr(client, method)(url, body, format="json")
            # then
            assert response.status_code < 500 or response.status_code in (502, 503), (
                method,
                path,
                body,
                response.status_code,
                response.content[:300],
            )
            assert str(response.status_code) in op["responses"], (
                method,
                path,
                response.status_code,
            )
            if response.status_code >= 400:
                refused += 1
                assert db_snapshot() == before, (method, path, body, response.status_code)

    assert refused > 500
