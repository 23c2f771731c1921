"""The marketplace REST API: staff only, JSON errors with a code (never a 500), the money
endpoints calling the services. Stripe is faked at the seam."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from rest_framework.test import APIClient

from ledger.selectors import balance_get
from marketplace.models import Campaign, Order, Refund, Restaurant
from tests.auth import make_user, token_client, token_for
from tests.marketplace.factories import CampaignFactory, RestaurantFactory, RiderFactory
from tests.marketplace.fakes import FakeGateway, fake_gateway
from tests.marketplace.flows import pay

__all__ = ["fake_gateway"]

pytestmark = pytest.mark.django_db


@pytest.fixture
def staff() -> APIClient:
    """Staff holding every marketplace role, by API token."""
    user = make_user("staff", roles=["Finance admin", "Marketing", "Service account"])
    return token_client(user)


def place(staff: APIClient, restaurant: Restaurant, **body: Any) -> Any:
    return staff.post(
        "/api/v1/orders/",
        {"restaurant": restaurant.pk, "subtotal": 2000, "delivery_fee": 500, **body},
        format="json",
    )


def test_anonymous_and_non_staff_are_refused() -> None:
    # given
    user = get_user_model().objects.create_user("customer")
    customer = APIClient()
    customer.credentials(HTTP_AUTHORIZATION=f"Token {token_for(user)}")
    # when
    anonymous = APIClient().get("/api/v1/orders/")
    forbidden = customer.post("/api/v1/restaurants/", {"name": "x"}, format="json")
    # then
    assert anonymous.status_code == 401
    assert anonymous.json()["code"] == "not_authenticated"
    assert forbidden.status_code == 403
    assert forbidden.json()["code"] == "permission_denied"
    assert Restaurant.objects.count() == 0


def test_onboarding_through_the_api(staff: APIClient, fake_gateway: FakeGateway) -> None:
    # when
    response = staff.post(
        "/api/v1/restaurants/", {"name": "Pho 99", "commission": "12%"}, format="json"
    )
    rider = staff.post("/api/v1/riders/", {"name": "Ana"}, format="json")
    # then
    assert response.status_code == 201, response.json()
    body = response.json()
    assert body["ledger_address"] == f"restaurants:{body['id']:03d}"
    assert body["stripe_account_id"].startswith("acct_")
    assert body["commission"] == "12%"
    assert rider.status_code == 201
    assert len(fake_gateway.calls_of("account_create")) == 2


def test_bad_commission_is_a_400(staff: APIClient, fake_gateway: FakeGateway) -> None:
    response = staff.post(
        "/api/v1/restaurants/", {"name": "X", "commission": "150%"}, format="json"
    )
    assert response.status_code == 400
    assert response.json()["code"] == "invalid_input"
    assert Restaurant.objects.count() == 0


def test_order_create_returns_the_payment_intent(
    staff: APIClient, fake_gateway: FakeGateway
) -> None:
    # given
    restaurant = RestaurantFactory()
    # when
    response = place(staff, restaurant, customer_email="c@example.com")
    # then
    assert response.status_code == 201, response.json()
    body = response.json()
    assert body["order"]["status"] == "pending_payment"
    assert body["order"]["total"] == 2500
    assert body["payment_intent"]["id"] == body["order"]["payment_intent_id"]
    assert body["payment_intent"]["transfer_group"] == f"ORDER_{body['order']['id']}"


@pytest.mark.parametrize("subtotal", ["2000", 20.5, True, None, -5, 10**12])
def test_amounts_must_be_json_integers(
    staff: APIClient, fake_gateway: FakeGateway, subtotal: Any
) -> None:
    restaurant = RestaurantFactory()
    response = place(staff, restaurant, subtotal=subtotal)
    assert response.status_code == 400
    body = response.json()
    assert body["code"] == "invalid"
    assert "subtotal" in body["errors"]
    assert Order.objects.count() == 0
    assert fake_gateway.calls == []


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        ({"restaurant": 424242}, 404, "not_found"),
        ({"coupon": "NOPE"}, 409, "coupon_unavailable"),
        ({"subtotal": 10, "delivery_fee": 0}, 400, "order_total_too_small"),
    ],
)
def test_order_errors_are_json_with_a_code(
    staff: APIClient, fake_gateway: FakeGateway, body: dict, status: int, code: str
) -> None:
    restaurant = RestaurantFactory()
    response = staff.post(
        "/api/v1/orders/",
        {"restaurant": restaurant.pk, "subtotal": 2000, "delivery_fee": 0, **body},
        format="json",
    )
    assert response.status_code == status
    assert response.json()["code"] == code


def test_malformed_json_is_a_400(staff: APIClient) -> None:
    response = staff.generic(
        "POST", "/api/v1/orders/", "{not json", content_type="application/json"
    )
    assert response.status_code == 400
    assert response.json()["code"] == "parse_error"


def test_coupon_exhausted_is_a_409(staff: APIClient, fake_gateway: FakeGateway) -> None:
    restaurant = RestaurantFactory()
    CampaignFactory(code="DRY", per_order_cap=500, funding=100)
    response = place(staff, restaurant, coupon="DRY")
    assert response.status_code == 409
    assert response.json()["code"] == "coupon_exhausted"


def test_deliver_unpaid_is_a_409(staff: APIClient, fake_gateway: FakeGateway) -> None:
    restaurant, rider = RestaurantFactory(), RiderFactory()
    order_id = place(staff, restaurant).json()["order"]["id"]
    response = staff.post(f"/api/v1/orders/{order_id}/deliver/", {"rider": rider.pk}, format="json")
    assert response.status_code == 409
    assert response.json()["code"] == "order_not_paid"


def test_assign_deliver_and_refund(staff: APIClient, fake_gateway: FakeGateway) -> None:
    # given: a paid order
    restaurant, rider = RestaurantFactory(), RiderFactory()
    created = place(staff, restaurant).json()
    order = Order.objects.get(pk=created["order"]["id"])
    pay(fake_gateway, order, fake_gateway.objects[created["payment_intent"]["id"]])
    # when
    assigned = staff.post(
        f"/api/v1/orders/{order.pk}/assign_rider/", {"rider": rider.pk}, format="json"
    )
    delivered = staff.post(f"/api/v1/orders/{order.pk}/deliver/", {}, format="json")
    too_big = staff.post(f"/api/v1/orders/{order.pk}/refunds/", {"amount": 2501}, format="json")
    refund = staff.post(
        f"/api/v1/orders/{order.pk}/refunds/",
        {"amount": 700, "bearer": "restaurant", "reason": "wrong dish", "idempotency_key": "k1"},
        format="json",
    )
    again = staff.post(
        f"/api/v1/orders/{order.pk}/refunds/",
        {"amount": 700, "bearer": "restaurant", "reason": "wrong dish", "idempotency_key": "k1"},
        format="json",
    )
    # then
    assert assigned.json()["rider"] == rider.pk
    assert delivered.json()["status"] == "delivered"
    assert too_big.status_code == 400
    assert too_big.json() == {
        "code": "refund_exceeds_refundable",
        "message": "Refund of 2501 exceeds what was paid and not yet refunded (2500).",
        "refundable": 2500,
        "amount": 2501,
    }
    assert refund.status_code == 201
    assert refund.json()["status"] == "submitted"
    assert again.json()["id"] == refund.json()["id"]
    assert Refund.objects.count() == 1
    assert staff.get(f"/api/v1/orders/{order.pk}/refunds/").json()[0]["bearer"] == "restaurant"
    balance = staff.get(f"/api/v1/restaurants/{restaurant.pk}/balance/").json()
    assert balance["available"] == 1700
    assert balance["in_flight"] == 0


def test_campaign_create_fund_pause(staff: APIClient) -> None:
    # when
    created = staff.post(
        "/api/v1/campaigns/",
        {"code": "summer", "budget": 1_500_000, "per_order_cap": 500, "percent_off": "20%"},
        format="json",
    )
    campaign_id = created.json()["id"]
    funded = staff.post(
        f"/api/v1/campaigns/{campaign_id}/fund/", {"amount": 1_500_000}, format="json"
    )
    over = staff.post(f"/api/v1/campaigns/{campaign_id}/fund/", {"amount": 1}, format="json")
    paused = staff.post(f"/api/v1/campaigns/{campaign_id}/pause/")
    duplicate = staff.post(
        "/api/v1/campaigns/", {"code": "SUMMER", "budget": 10, "per_order_cap": 5}, format="json"
    )
    # then
    assert created.status_code == 201
    assert created.json()["code"] == "SUMMER"
    assert funded.status_code == 201
    assert (funded.json()["funded"], funded.json()["remaining"]) == (1_500_000, 1_500_000)
    assert over.status_code == 409
    assert over.json()["code"] == "campaign_over_budget"
    assert paused.json()["paused"] is True
    assert duplicate.json()["code"] == "campaign_code_taken"
    assert Campaign.objects.count() == 1
    assert balance_get(address="coupons:SUMMER", asset="USD/2") == 1_500_000


def test_topup_through_the_api(staff: APIClient, fake_gateway: FakeGateway) -> None:
    response = staff.post("/api/v1/topups/", {"amount": 10_000}, format="json")
    assert response.status_code == 201
    assert response.json()["status"] == "succeeded"
    assert balance_get(address="stripe:balance", asset="USD/2") == -10_000
    assert balance_get(address="bank:platform", asset="USD/2") == 10_000


def test_books_endpoints(staff: APIClient, fake_gateway: FakeGateway) -> None:
    # given: a paid, delivered order
    restaurant, rider = RestaurantFactory(), RiderFactory()
    created = place(staff, restaurant).json()
    order = Order.objects.get(pk=created["order"]["id"])
    pay(fake_gateway, order, fake_gateway.objects[created["payment_intent"]["id"]])
    staff.post(f"/api/v1/orders/{order.pk}/deliver/", {"rider": rider.pk}, format="json")
    # when
    owed = staff.get("/api/v1/books/owed/").json()
    past = staff.get("/api/v1/books/owed/", {"at": "2001-01-01T00:00:00Z"}).json()
    sheet = staff.get("/api/v1/books/balance_sheet/").json()
    risk = staff.get("/api/v1/books/risk/").json()
    riders = staff.get("/api/v1/books/payees/", {"kind": "rider"}).json()
    bad_at = staff.get("/api/v1/books/owed/", {"at": "yesterday"})
    # then
    groups = {g["name"]: g["owed"] for g in owed["groups"]}
    assert groups["restaurants"] == 1700
    assert groups["riders"] == 500
    assert owed["owed"] == 2200
    assert past["owed"] == 0
    assert sheet["balanced"] is True
    assert risk["stripe_balance"] == 2500 - 103
    assert risk["owed_total"] == 2200
    assert risk["covered"] is True
    assert riders == [
        {
            "kind": "rider",
            "id": rider.pk,
            "name": rider.name,
            "ledger_address": rider.ledger_address,
            "stripe_account_id": "",
            "payouts_on_hold": False,
            "asset": "USD/2",
            "available": 500,
            "in_flight": 0,
        }
    ]
    assert bad_at.status_code == 400
    assert bad_at.json()["code"] == "invalid_timestamp"


def test_commission_and_the_one_hold_path(staff: APIClient) -> None:
    restaurant = RestaurantFactory()
    # the marketplace's own hold endpoint is gone: holds go through the payouts service
    # (permission, hold history, reserved payouts cancelled)
    old_hold = staff.post(
        f"/api/v1/restaurants/{restaurant.pk}/hold/", {"on_hold": True}, format="json"
    )
    commission = staff.post(
        f"/api/v1/restaurants/{restaurant.pk}/commission/", {"commission": "10%"}, format="json"
    )
    missing = staff.get("/api/v1/restaurants/999999/")
    assert old_hold.status_code == 404
    restaurant.refresh_from_db()
    assert restaurant.payouts_on_hold is False
    assert commission.json()["commission"] == "10%"
    assert missing.status_code == 404
    assert missing.json()["code"] == "not_found"


def test_openapi_schema_lists_the_marketplace(staff: APIClient) -> None:
    response = staff.get("/api/schema/", {"format": "json"})
    assert response.status_code == 200
    paths = response.json()["paths"]
    for path in (
        "/api/v1/orders/",
        "/api/v1/orders/{id}/refunds/",
        "/api/v1/campaigns/{id}/fund/",
        "/api/v1/books/risk/",
    ):
        assert path in paths


def test_past_instant_must_have_a_zone(staff: APIClient) -> None:
    naive = datetime(2024, 1, 1, tzinfo=UTC).replace(tzinfo=None).isoformat()
    response = staff.get("/api/v1/books/risk/", {"at": naive})
    assert response.status_code == 400


@pytest.mark.parametrize(
    "model",
    ["restaurant", "rider", "order", "refund", "dispute", "campaign", "topup", "anomaly"],
)
def test_admin_pages_load(fake_gateway: FakeGateway, model: str) -> None:
    # given: some data and a superuser
    restaurant = RestaurantFactory()
    place_client = APIClient()
    admin_user = get_user_model().objects.create_superuser("root", "root@example.com", "pw")
    place_client.force_login(admin_user)
    from marketplace.services.orders import order_create

    order_create(restaurant_id=restaurant.pk, subtotal=2000, delivery_fee=0)
    # when
    listing = place_client.get(f"/admin/marketplace/{model}/")
    # then
    assert listing.status_code == 200


def test_create_and_deliver_answer_the_order_as_stored(
    staff: APIClient, fake_gateway: FakeGateway
) -> None:
    """The order in the answers is the row as committed (the services return what they read
    under the order's lock instead of reading it again): equal to a fresh read."""
    from marketplace.api.serializers import OrderOutput
    from marketplace.services.orders import order_get

    # given
    restaurant, rider = RestaurantFactory(), RiderFactory()
    campaign = CampaignFactory(code="ASSTORED", per_order_cap=300, funding=1_000)
    # when
    created = place(staff, restaurant, coupon="ASSTORED")
    order_id = created.json()["order"]["id"]
    stored_after_create = OrderOutput(order_get(order_id=order_id)).data
    order = Order.objects.get(pk=order_id)
    pay(fake_gateway, order, fake_gateway.objects[created.json()["payment_intent"]["id"]])
    delivered = staff.post(
        f"/api/v1/orders/{order_id}/deliver/", {"rider": rider.pk}, format="json"
    )
    again = staff.post(f"/api/v1/orders/{order_id}/deliver/", {}, format="json")
    # then
    assert created.status_code == 201 and delivered.status_code == 200, delivered.json()
    assert created.json()["order"] == stored_after_create
    assert stored_after_create["coupon"] == campaign.code
    assert stored_after_create["status"] == "pending_payment"
    assert delivered.json() == OrderOutput(order_get(order_id=order_id)).data == again.json()
    assert delivered.json()["rider"] == rider.pk and delivered.json()["status"] == "delivered"
