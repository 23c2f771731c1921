"""The staff dashboard through Django's test client: sign-in, the named-permission check on
every page, today's numbers, search, deep links, the order timeline, and that bad input gets
a clear message on the page with nothing written (never a 500)."""

from __future__ import annotations

from typing import Any

import pytest
from django.test import Client

from audit.models import AuditEntry
from marketplace.models import Anomaly, Order, Refund
from marketplace.services.refunds import refund_issue
from staff.roles import FINANCE, MARKETING, SERVICE_ACCOUNT, SUPPORT
from tests.auth import make_user
from tests.marketplace.factories import CampaignFactory
from tests.marketplace.fakes import FakeGateway, fake_gateway
from tests.staff.dashboard import paid_order, signed_in

__all__ = ["fake_gateway"]

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _guards(stripe_atomic_violations: list[str], celery_eager: None, settings: Any) -> None:
    settings.LEDGER_SEAL_ON_COMMIT = False
    settings.REFUNDS_APPROVAL_THRESHOLD = {"USD/2": 5000}


# --- sign-in and permissions ------------------------------------------------------------------


def test_anonymous_is_sent_to_sign_in() -> None:
    response = Client().get("/staff/orders/42/")
    assert response.status_code == 302
    assert response["Location"] == "/staff/login/?next=/staff/orders/42/"


def test_sign_in_with_a_password_then_sign_out() -> None:
    make_user("sam", roles=[SUPPORT], password="s3cret-pass")
    client = Client(enforce_csrf_checks=True)
    page = client.get("/staff/login/")
    csrf = page.cookies["csrftoken"].value
    response = client.post(
        "/staff/login/",
        {"username": "sam", "password": "s3cret-pass", "csrfmiddlewaretoken": csrf},
    )
    assert response.status_code == 302 and response["Location"] == "/staff/"
    home = client.get("/staff/")
    assert home.status_code == 200 and b"sam" in home.content
    csrf = client.cookies["csrftoken"].value
    assert client.post("/staff/logout/", {"csrfmiddlewaretoken": csrf}).status_code == 302
    assert client.get("/staff/").status_code == 302


def test_a_non_staff_account_cannot_sign_in() -> None:
    make_user("svc", roles=[SERVICE_ACCOUNT], staff=False, password="s3cret-pass")
    response = Client().post("/staff/login/", {"username": "svc", "password": "s3cret-pass"})
    assert response.status_code == 200
    assert b"not a staff account" in response.content


@pytest.mark.parametrize(
    ("role", "path", "status"),
    [
        (SUPPORT, "/staff/campaigns/", 403),
        (SUPPORT, "/staff/campaigns/new/", 403),
        (SUPPORT, "/staff/audit/", 403),
        (SUPPORT, "/staff/orders/", 200),
        (MARKETING, "/staff/campaigns/", 200),
        (MARKETING, "/staff/refunds/", 403),
        (MARKETING, "/staff/audit/", 403),
        (FINANCE, "/staff/audit/", 200),
        (FINANCE, "/staff/refunds/", 200),
        (FINANCE, "/staff/campaigns/new/", 403),
    ],
)
def test_each_page_checks_its_named_permission(role: str, path: str, status: int) -> None:
    client, _ = signed_in(f"user-{role}", roles=(role,))
    response = client.get(path)
    assert response.status_code == status
    if status == 403:
        assert b"needs the permission" in response.content


def test_support_cannot_post_to_a_marketing_action_either() -> None:
    # given
    campaign = CampaignFactory()
    client, _ = signed_in("sue", roles=(SUPPORT,))
    # when
    response = client.post(f"/staff/campaigns/{campaign.pk}/pause/", {"action": "confirm"})
    # then
    assert response.status_code == 403
    campaign.refresh_from_db()
    assert campaign.paused is False
    assert not AuditEntry.objects.filter(action__startswith="campaign.pause").exists()


# --- home, search, deep links ------------------------------------------------------------------


def test_home_shows_todays_numbers(fake_gateway: FakeGateway) -> None:
    # given: two paid orders today, one refund awaiting approval, one anomaly
    first = paid_order(fake_gateway, subtotal=8000, delivery_fee=600)
    paid_order(fake_gateway, subtotal=2000, delivery_fee=500)
    requester = make_user("req", roles=[SUPPORT])
    refund_issue(order_id=first.pk, amount=6000, requested_by=requester, request_key="k1")
    Anomaly.objects.create(kind="test", message="look at me")
    client, _ = signed_in("fin", roles=(FINANCE,))
    # when
    html = client.get("/staff/").content.decode()
    # then
    assert 'data-testid="orders-today">2<' in html
    assert "USD 111.00" in html  # 86.00 + 25.00 captured today
    assert 'data-testid="awaiting">1<' in html
    assert 'data-testid="anomalies">1<' in html


def test_search_finds_each_kind_and_redirects_on_one_hit(fake_gateway: FakeGateway) -> None:
    # given
    order = paid_order(fake_gateway, customer_email="ada@example.com", customer_name="Ada Lovelace")
    customer = order.customer
    client, _ = signed_in("sam", roles=(SUPPORT,))
    order_url = f"/staff/orders/{order.pk}/"
    # when / then
    for term in (
        str(order.pk),
        f"#{order.pk}",
        order.payment_intent_id,
        order.charge_id,
        f"payment:{order.charge_id}",
    ):
        response = client.get("/staff/search/", {"q": term})
        assert (response.status_code, response["Location"]) == (302, order_url), term
    for term in ("ADA@example.com", "lovelace"):
        response = client.get("/staff/search/", {"q": term})
        assert response["Location"] == f"/staff/customers/{customer.pk}/", term


def test_search_by_refund_id(fake_gateway: FakeGateway) -> None:
    order = paid_order(fake_gateway)
    refund = refund_issue(order_id=order.pk, amount=100, request_key="x")
    client, _ = signed_in("sam", roles=(SUPPORT,))
    response = client.get("/staff/search/", {"q": refund.stripe_refund_id})
    assert response["Location"] == f"/staff/refunds/{refund.pk}/"


@pytest.mark.parametrize(
    "term",
    ["999999", "pi_nothing", "re_nope", "nobody@example.com", "zzz", "delivery:1", "", "'; --"],
)
def test_an_unknown_search_term_says_so(term: str) -> None:
    client, _ = signed_in("sam", roles=(SUPPORT,))
    response = client.get("/staff/search/", {"q": term})
    assert response.status_code == 200
    assert b'data-testid="search-message"' in response.content


@pytest.mark.parametrize(
    "path",
    [
        "/staff/orders/999999/",
        "/staff/customers/999999/",
        "/staff/refunds/999999/",
        "/staff/campaigns/999999/",
        "/staff/orders/999999/refund/",
        "/staff/refunds/999999/approve/",
        "/staff/campaigns/999999/fund/",
        "/staff/orders/99999999999999999999999/",
    ],
)
def test_a_deep_link_to_a_missing_object_is_a_clear_404(path: str) -> None:
    client, _ = signed_in("root", superuser=True)
    response = client.get(path)
    assert response.status_code == 404
    assert b"There is no" in response.content or b"Not Found" in response.content


def test_the_order_page_merges_everything_into_one_timeline(fake_gateway: FakeGateway) -> None:
    # given: a paid order with a refund sent to (fake) Stripe
    order = paid_order(fake_gateway)
    refund_issue(order_id=order.pk, amount=1000, request_key="k")
    client, _ = signed_in("sam", roles=(SUPPORT,))
    # when
    html = client.get(f"/staff/orders/{order.pk}/").content.decode()
    # then: status changes, the Stripe event, the ledger payment with its postings, the refund
    assert "pending_payment → paid" in html or "→ paid" in html
    assert "Stripe payment_intent.succeeded" in html
    assert f"ledger payment:{order.charge_id}" in html
    assert f"payments:{order.charge_id}" in html
    assert "refund" in html and "USD 10.00" in html
    assert 'data-testid="refundable">USD 36.00<' in html


def test_keyset_pagination_of_orders(fake_gateway: FakeGateway) -> None:
    orders = [paid_order(fake_gateway) for _ in range(3)]
    client, _ = signed_in("sam", roles=(SUPPORT,))
    html = client.get("/staff/orders/", {"before": orders[-1].pk}).content.decode()
    assert f"/staff/orders/{orders[0].pk}/" in html
    assert f"/staff/orders/{orders[-1].pk}/" not in html
    assert client.get("/staff/orders/", {"before": "abc"}).status_code == 200


def test_the_customer_page_lists_orders_and_refunds(fake_gateway: FakeGateway) -> None:
    order = paid_order(fake_gateway, customer_email="bo@example.com", customer_name="Bo")
    customer = order.customer
    refund = refund_issue(order_id=order.pk, amount=500, request_key="k")
    client, _ = signed_in("sam", roles=(SUPPORT,))
    html = client.get(f"/staff/customers/{customer.pk}/").content.decode()
    assert f"/staff/orders/{order.pk}/" in html and f"/staff/refunds/{refund.pk}/" in html


def test_the_audit_page_filters_by_object_user_and_action(fake_gateway: FakeGateway) -> None:
    order = paid_order(fake_gateway)
    agent = make_user("agent", roles=[SUPPORT])
    refund = refund_issue(order_id=order.pk, amount=500, request_key="k", requested_by=agent)
    client, _ = signed_in("fin", roles=(FINANCE,))
    html = client.get(
        "/staff/audit/", {"object": f"marketplace.refund:{refund.pk}"}
    ).content.decode()
    assert "refund.request" in html and "agent" in html
    assert "refund.request" in client.get("/staff/audit/", {"user": "agent"}).content.decode()
    assert (
        "No audit rows match"
        in client.get("/staff/audit/", {"action": "campaign."}).content.decode()
    )
    assert client.get("/staff/audit/", {"before": "x", "object": ":::"}).status_code == 200


def test_orders_of_every_status_render(fake_gateway: FakeGateway) -> None:
    order = paid_order(fake_gateway)
    Order.objects.filter(pk=order.pk).update(status=Order.Status.PAID)
    client, _ = signed_in("sam", roles=(SUPPORT,))
    for status in Order.Status.values:
        assert client.get("/staff/orders/", {"status": status}).status_code == 200
    assert Refund.objects.count() == 0
