"""Role x action: every money-moving API endpoint, for every kind of caller. A caller without
the named permission is refused (401 anonymous, 403 otherwise) and nothing is written; a
caller with it gets past the permission check. The expected set is derived from
staff/roles.py, so a role gaining a permission changes this test's expectations on purpose."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
from django.contrib.auth.models import Permission
from rest_framework.test import APIClient

from ledger.models import Transaction
from ledger.services import transaction_post
from marketplace.models import Campaign, Order, Refund, Restaurant, Rider
from marketplace.services.refunds import refund_request
from payouts.models import Payout
from payouts.services import payouts_schedule
from staff.roles import ROLES
from tests.auth import make_user, session_client, token_client
from tests.marketplace.factories import CampaignFactory, RestaurantFactory, RiderFactory
from tests.marketplace.fakes import FakeGateway, fake_gateway
from tests.marketplace.flows import pay, placed_order
from tests.payouts.helpers import key, make_payee
from tests.snapshots import db_snapshot

__all__ = ["fake_gateway"]

pytestmark = pytest.mark.django_db

CALLERS = ["anonymous", "token without role", "staff without role", *ROLES, "superuser"]


@pytest.fixture(autouse=True)
def _guards(stripe_atomic_violations: list[str], celery_eager: None, settings: Any) -> None:
    settings.LEDGER_SEAL_ON_COMMIT = False


@dataclass
class World:
    order: Order
    restaurant: Restaurant
    rider: Rider
    campaign: Campaign
    payout: Payout
    payee_kind: str
    payee_id: int
    tx_id: int
    refund: Refund


@pytest.fixture
def world(fake_gateway: FakeGateway) -> World:
    restaurant = RestaurantFactory()
    rider = RiderFactory()
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
    tx = Transaction.objects.order_by("-id").first()
    requester = make_user("requester", roles=["Support"])
    refund = refund_request(order_id=order.pk, amount=2000, requested_by=requester)
    Refund.objects.filter(pk=refund.pk).update(status=Refund.Status.AWAITING_APPROVAL)
    refund.refresh_from_db()
    return World(order, restaurant, rider, campaign, payout, "restaurant", payee.pk, tx.pk, refund)


@dataclass(frozen=True)
class Action:
    name: str
    method: str
    url: Callable[[World], str]
    body: Callable[[World], dict[str, Any]]
    permission: str


ACTIONS = [
    Action(
        "ledger post (money from world)",
        "post",
        lambda w: "/api/v1/ledger/transactions/",
        lambda w: {
            "postings": [
                {
                    "source": "world",
                    "destination": "restaurants:999",
                    "asset": "USD/2",
                    "amount": 100000,
                }
            ]
        },
        "ledger.post_transaction",
    ),
    Action(
        "ledger bulk",
        "post",
        lambda w: "/api/v1/ledger/transactions/bulk/",
        lambda w: {
            "items": [
                {
                    "postings": [
                        {"source": "world", "destination": "x:1", "asset": "USD/2", "amount": 1}
                    ]
                }
            ]
        },
        "ledger.post_transaction",
    ),
    Action(
        "ledger revert",
        "post",
        lambda w: f"/api/v1/ledger/transactions/{w.tx_id}/revert/",
        lambda w: {"force": True},
        "ledger.revert_transaction",
    ),
    Action(
        "ledger account metadata",
        "post",
        lambda w: f"/api/v1/ledger/accounts/{w.restaurant.ledger_address}/metadata/",
        lambda w: {"commission": "0%"},
        "ledger.set_account_metadata",
    ),
    Action(
        "ledger account metadata delete",
        "delete",
        lambda w: f"/api/v1/ledger/accounts/{w.restaurant.ledger_address}/metadata/kind/",
        lambda w: {},
        "ledger.set_account_metadata",
    ),
    Action(
        "refund",
        "post",
        lambda w: f"/api/v1/orders/{w.order.pk}/refunds/",
        lambda w: {"amount": 1000, "bearer": "platform"},
        "marketplace.request_refund",
    ),
    Action(
        "campaign create",
        "post",
        lambda w: "/api/v1/campaigns/",
        lambda w: {"code": "NEWPROMO", "budget": 100000, "per_order_cap": 500},
        "marketplace.manage_campaigns",
    ),
    Action(
        "campaign fund",
        "post",
        lambda w: f"/api/v1/campaigns/{w.campaign.pk}/fund/",
        lambda w: {"amount": 99_999_999},
        "marketplace.manage_campaigns",
    ),
    Action(
        "campaign pause",
        "post",
        lambda w: f"/api/v1/campaigns/{w.campaign.pk}/pause/",
        lambda w: {},
        "marketplace.manage_campaigns",
    ),
    Action(
        "campaign resume",
        "post",
        lambda w: f"/api/v1/campaigns/{w.campaign.pk}/resume/",
        lambda w: {},
        "marketplace.manage_campaigns",
    ),
    Action(
        "campaign close",
        "post",
        lambda w: f"/api/v1/campaigns/{w.campaign.pk}/close/",
        lambda w: {},
        "marketplace.manage_campaigns",
    ),
    Action(
        "refund approve",
        "post",
        lambda w: f"/api/v1/refunds/{w.refund.pk}/approve/",
        lambda w: {},
        "marketplace.approve_refund",
    ),
    Action(
        "refund reject",
        "post",
        lambda w: f"/api/v1/refunds/{w.refund.pk}/reject/",
        lambda w: {"reason": "no"},
        "marketplace.approve_refund",
    ),
    Action(
        "top-up",
        "post",
        lambda w: "/api/v1/topups/",
        lambda w: {"amount": 300000},
        "marketplace.create_topup",
    ),
    Action(
        "restaurant onboard",
        "post",
        lambda w: "/api/v1/restaurants/",
        lambda w: {"name": "Minted", "commission": "0%"},
        "marketplace.manage_payees",
    ),
    Action(
        "rider onboard",
        "post",
        lambda w: "/api/v1/riders/",
        lambda w: {"name": "Rider X"},
        "marketplace.manage_payees",
    ),
    Action(
        "commission change",
        "post",
        lambda w: f"/api/v1/restaurants/{w.restaurant.pk}/commission/",
        lambda w: {"commission": "0%"},
        "marketplace.manage_payees",
    ),
    Action(
        "order place",
        "post",
        lambda w: "/api/v1/orders/",
        lambda w: {"restaurant": w.restaurant.pk, "subtotal": 2000, "delivery_fee": 500},
        "marketplace.manage_orders",
    ),
    Action(
        "order deliver (splits the money)",
        "post",
        lambda w: f"/api/v1/orders/{w.order.pk}/deliver/",
        lambda w: {"rider": w.rider.pk},
        "marketplace.manage_orders",
    ),
    Action(
        "order assign rider",
        "post",
        lambda w: f"/api/v1/orders/{w.order.pk}/assign_rider/",
        lambda w: {"rider": w.rider.pk},
        "marketplace.manage_orders",
    ),
    Action(
        "order cancel",
        "post",
        lambda w: f"/api/v1/orders/{w.order.pk}/cancel/",
        lambda w: {},
        "marketplace.manage_orders",
    ),
    Action(
        "payee hold",
        "post",
        lambda w: f"/api/v1/payouts/payees/{w.payee_kind}/{w.payee_id}/hold/",
        lambda w: {"reason": "fraud check"},
        "payouts.manage_payouts",
    ),
    Action(
        "payee release",
        "post",
        lambda w: f"/api/v1/payouts/payees/{w.payee_kind}/{w.payee_id}/release/",
        lambda w: {"reason": "cleared"},
        "payouts.manage_payouts",
    ),
    Action(
        "payout cancel",
        "post",
        lambda w: f"/api/v1/payouts/{w.payout.pk}/cancel/",
        lambda w: {"reason": "x"},
        "payouts.manage_payouts",
    ),
    Action(
        "payout retry",
        "post",
        lambda w: f"/api/v1/payouts/{w.payout.pk}/retry/",
        lambda w: {},
        "payouts.manage_payouts",
    ),
    Action(
        "payout reverse",
        "post",
        lambda w: f"/api/v1/payouts/{w.payout.pk}/reverse/",
        lambda w: {"reason": "x"},
        "payouts.manage_payouts",
    ),
    Action(
        "payouts run",
        "post",
        lambda w: "/api/v1/payouts/run/",
        lambda w: {},
        "payouts.manage_payouts",
    ),
]


def _client(caller: str) -> APIClient:
    if caller == "anonymous":
        return APIClient()
    if caller == "token without role":
        return token_client(make_user("svc-nobody", staff=False))
    if caller == "staff without role":
        return token_client(make_user("staff-nobody"))
    if caller == "superuser":
        return session_client(make_user("root", superuser=True))
    return token_client(
        make_user(f"user-{caller}", roles=[caller], staff=caller != "Service account")
    )


def _allowed(caller: str, permission: str) -> bool:
    return caller == "superuser" or permission in ROLES.get(caller, [])


def _snapshot() -> dict[str, Any]:
    """Every table's row count and the ledger's sums, and the states a money action changes."""
    return db_snapshot(
        rows={
            "refunds": Refund.objects.values_list("id", "status").order_by("id"),
            "campaigns": Campaign.objects.values_list("id", "funded", "paused").order_by("id"),
            "orders": Order.objects.values_list("id", "status", "rider_id").order_by("id"),
            "restaurants": Restaurant.objects.values_list("id", "commission").order_by("id"),
            "payouts": Payout.objects.values_list("id", "state").order_by("id"),
        }
    )


@pytest.mark.parametrize("caller", CALLERS)
@pytest.mark.parametrize("action", ACTIONS, ids=lambda a: a.name)
def test_role_action_matrix(world: World, action: Action, caller: str) -> None:
    # given
    client = _client(caller)
    before = _snapshot()

    # when
    response = getattr(client, action.method)(action.url(world), action.body(world), format="json")

    # then
    if _allowed(caller, action.permission):
        assert response.status_code not in (401, 403), response.content
    else:
        assert response.status_code == (401 if caller == "anonymous" else 403), response.content
        assert _snapshot() == before
        if caller != "anonymous":
            assert action.permission in response.json()["message"]


def test_every_money_moving_view_declares_a_named_permission() -> None:
    """A new write endpoint without a named permission would be refused to everyone (the
    default class), but it must say which permission it needs: list them all."""
    from django.urls import get_resolver

    from config.permissions import NamedPermissions

    unsafe = {"post", "put", "patch", "delete"}
    missing = []
    for pattern in _patterns(get_resolver()):
        view = getattr(pattern.callback, "view_class", None)
        if view is None or not hasattr(view, "permission_classes"):
            continue
        methods = {m for m in unsafe if hasattr(view, m)}
        if not methods:
            continue
        if NamedPermissions not in view.permission_classes:
            missing.append(f"{pattern.pattern}: {view.__name__} does not use NamedPermissions")
            continue
        declared = {m.lower() for m in getattr(view, "required_permissions", {})}
        for m in sorted(methods - declared):
            missing.append(f"{pattern.pattern}: {view.__name__}.{m} declares no permission")
        for perms in view.required_permissions.values():
            for name in perms:
                app_label, codename = name.split(".", 1)
                if not Permission.objects.filter(
                    content_type__app_label=app_label, codename=codename
                ).exists():
                    missing.append(f"{view.__name__}: no such permission {name}")
    assert missing == []


def _patterns(resolver: Any) -> list[Any]:
    out = []
    for p in resolver.url_patterns:
        if hasattr(p, "url_patterns"):
            out += _patterns(p)
        else:
            out.append(p)
    return out
