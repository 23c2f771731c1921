"""Money actions from the dashboard: each previews, asks for confirmation, acts once through
the API's services (audit row from the service), and refuses bad input with a message on the
page and nothing written."""

from __future__ import annotations

from typing import Any

import pytest

from audit.models import AuditEntry
from ledger.selectors import balance_get
from marketplace.models import Campaign, CampaignFunding, Order, Refund
from staff.roles import FINANCE, MARKETING, SUPPORT
from tests.marketplace.factories import CampaignFactory
from tests.marketplace.fakes import FakeGateway, fake_gateway
from tests.staff.dashboard import form_token, paid_order, seen_refunded, signed_in

__all__ = ["fake_gateway"]

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _guards(stripe_atomic_violations: list[str], celery_eager: None, settings: Any) -> None:
    settings.LEDGER_SEAL_ON_COMMIT = False
    settings.REFUNDS_APPROVAL_THRESHOLD = {"USD/2": 5000}


FORM = {"reason": "requested_by_customer", "note": "cold food", "bearer": "platform"}


def preview(client: Any, order: Order, **values: Any) -> Any:
    return client.post(f"/staff/orders/{order.pk}/refund/", {**FORM, **values, "action": "preview"})


def confirm(client: Any, order: Order, page: Any, **values: Any) -> Any:
    html = page.content.decode()
    return client.post(
        f"/staff/orders/{order.pk}/refund/",
        {
            **FORM,
            **values,
            "action": "confirm",
            "token": form_token(html),
            "seen_refunded": seen_refunded(html),
        },
    )


# --- refunds ----------------------------------------------------------------------------------


def test_a_refund_previews_the_exact_postings_then_acts_once(fake_gateway: FakeGateway) -> None:
    # given
    order = paid_order(fake_gateway)
    client, agent = signed_in("agent", roles=(SUPPORT,))
    # when: preview
    page = preview(client, order, amount="12.50")
    # then: the postings of the dry run, and nothing written
    html = page.content.decode()
    assert page.status_code == 200
    assert f"orders:{order.pk}" in html and "stripe:balance" in html and "USD 12.50" in html
    assert Refund.objects.count() == 0
    # when: confirm, twice (a double click)
    first = confirm(client, order, page, amount="12.50")
    second = confirm(client, order, page, amount="12.50")
    # then: one refund, sent once to Stripe, one audit row by the agent
    refund = Refund.objects.get()
    assert (refund.amount, refund.status, refund.requested_by) == (1250, "submitted", agent)
    assert refund.reason == "requested_by_customer: cold food"
    assert first["Location"] == second["Location"] == f"/staff/refunds/{refund.pk}/"
    assert len(fake_gateway.calls_of("refund_create")) == 1
    audit = AuditEntry.objects.get(action="refund.request")
    assert (audit.actor_label, audit.via, audit.amount) == ("agent", "staff", 1250)
    assert audit.request_id
    order.refresh_from_db()
    assert order.amount_refunded == 1250


@pytest.mark.parametrize(
    ("amount", "message"),
    [
        ("46.01", "exceeds what was paid"),
        ("-5", "must be positive"),
        ("0", "must be positive"),
        ("12.345", "not a whole number of minor units"),
        ("abc", "is not an amount"),
        ("", "is not an amount"),
        ("1e9", "too large"),
        ("NaN", "is not an amount"),
    ],
)
def test_bad_amounts_are_refused_on_the_page(
    fake_gateway: FakeGateway, amount: str, message: str
) -> None:
    order = paid_order(fake_gateway)
    client, _ = signed_in("agent", roles=(SUPPORT,))
    response = preview(client, order, amount=amount)
    assert response.status_code == 400
    assert message in response.content.decode()
    assert Refund.objects.count() == 0


def test_bad_bearer_shares_are_refused(fake_gateway: FakeGateway) -> None:
    order = paid_order(fake_gateway)
    client, _ = signed_in("agent", roles=(SUPPORT,))
    for values in (
        {"bearer": "shared", "restaurant_share": "80%", "rider_share": "30%"},
        {"bearer": "shared", "restaurant_share": "lots"},
        {"bearer": "nobody"},
        {"reason": "because"},
    ):
        response = preview(client, order, amount="5", **values)
        assert response.status_code == 400, values
    assert Refund.objects.count() == 0


def test_a_shared_refund_after_delivery_previews_each_bearer(fake_gateway: FakeGateway) -> None:
    from marketplace.services.orders import order_deliver
    from tests.marketplace.factories import RiderFactory

    order = paid_order(fake_gateway)
    rider = RiderFactory()
    order_deliver(order_id=order.pk, rider_id=rider.pk)
    client, _ = signed_in("agent", roles=(SUPPORT,))
    html = preview(
        client, order, amount="10.00", bearer="shared", restaurant_share="50%", rider_share="0%"
    ).content.decode()
    assert order.restaurant.ledger_address in html and "platform:losses" in html


def test_a_refund_on_an_unpaid_order_is_refused(fake_gateway: FakeGateway) -> None:
    from tests.marketplace.factories import RestaurantFactory
    from tests.marketplace.flows import placed_order

    order, _ = placed_order(
        fake_gateway, restaurant_id=RestaurantFactory().pk, subtotal=1000, delivery_fee=0
    )
    client, _ = signed_in("agent", roles=(SUPPORT,))
    assert b"nothing was paid to refund" in client.get(f"/staff/orders/{order.pk}/refund/").content
    response = preview(client, order, amount="1.00")
    assert response.status_code == 400 and b"nothing was paid to refund" in response.content
    assert Refund.objects.count() == 0


def test_two_agents_refunding_at_once_one_wins_the_other_is_told(
    fake_gateway: FakeGateway,
) -> None:
    # given: two agents previewed a refund of the same order
    order = paid_order(fake_gateway)
    alice, _ = signed_in("alice", roles=(SUPPORT,))
    bob, _ = signed_in("bob", roles=(SUPPORT,))
    page_a = preview(alice, order, amount="30.00")
    page_b = preview(bob, order, amount="30.00")
    # when: both confirm
    first = confirm(alice, order, page_a, amount="30.00")
    second = confirm(bob, order, page_b, amount="30.00")
    # then: one refund; bob sees why, nothing of his was written
    assert first.status_code == 302
    assert second.status_code == 409
    assert "Another refund was made on this order since your preview (by alice)" in (
        second.content.decode()
    )
    assert Refund.objects.count() == 1


def test_the_refund_status_json_is_small_and_permission_checked(fake_gateway: FakeGateway) -> None:
    order = paid_order(fake_gateway)
    client, _ = signed_in("agent", roles=(SUPPORT,))
    refund_url = confirm(client, order, preview(client, order, amount="5"), amount="5")["Location"]
    state = client.get(refund_url + "status.json").json()
    assert state["status"] == "submitted" and state["terminal"] is False
    marketer, _ = signed_in("mk", roles=(MARKETING,))
    assert marketer.get(refund_url + "status.json").status_code == 403


# --- four eyes --------------------------------------------------------------------------------


def awaiting_refund(
    fake_gateway: FakeGateway, requester_roles: tuple[str, ...]
) -> tuple[Any, Refund]:
    order = paid_order(fake_gateway, subtotal=9000)
    client, _ = signed_in("requester", roles=requester_roles)
    confirm(client, order, preview(client, order, amount="60.00"), amount="60.00")
    refund = Refund.objects.get()
    assert refund.status == Refund.Status.AWAITING_APPROVAL
    return client, refund


def test_self_approval_is_refused_with_a_clear_message(fake_gateway: FakeGateway) -> None:
    client, refund = awaiting_refund(fake_gateway, (FINANCE,))
    page = client.get(f"/staff/refunds/{refund.pk}/approve/")
    response = client.post(
        f"/staff/refunds/{refund.pk}/approve/", {"token": form_token(page.content.decode())}
    )
    assert response.status_code == 403
    assert "a different person must approve" in response.content.decode()
    refund.refresh_from_db()
    assert refund.status == Refund.Status.AWAITING_APPROVAL
    assert fake_gateway.calls_of("refund_create") == []


def test_a_second_person_approves_and_it_goes_to_stripe(fake_gateway: FakeGateway) -> None:
    _, refund = awaiting_refund(fake_gateway, (SUPPORT,))
    approver, boss = signed_in("boss", roles=(FINANCE,))
    assert f"/staff/refunds/{refund.pk}/" in approver.get("/staff/refunds/").content.decode()
    page = approver.get(f"/staff/refunds/{refund.pk}/approve/")
    token = form_token(page.content.decode())
    first = approver.post(f"/staff/refunds/{refund.pk}/approve/", {"token": token})
    again = approver.post(f"/staff/refunds/{refund.pk}/approve/", {"token": token})
    assert first.status_code == again.status_code == 302
    refund.refresh_from_db()
    assert (refund.status, refund.decided_by) == (Refund.Status.SUBMITTED, boss)
    assert len(fake_gateway.calls_of("refund_create")) == 1
    assert AuditEntry.objects.filter(action="refund.approve", actor_label="boss").count() == 1


def test_support_cannot_approve(fake_gateway: FakeGateway) -> None:
    _, refund = awaiting_refund(fake_gateway, (SUPPORT,))
    other, _ = signed_in("other-agent", roles=(SUPPORT,))
    assert other.post(f"/staff/refunds/{refund.pk}/approve/", {"token": "x"}).status_code == 403
    refund.refresh_from_db()
    assert refund.status == Refund.Status.AWAITING_APPROVAL


def test_reject_needs_a_reason_and_frees_the_amount(fake_gateway: FakeGateway) -> None:
    _, refund = awaiting_refund(fake_gateway, (SUPPORT,))
    approver, _ = signed_in("boss", roles=(FINANCE,))
    token = form_token(approver.get(f"/staff/refunds/{refund.pk}/reject/").content.decode())
    empty = approver.post(f"/staff/refunds/{refund.pk}/reject/", {"token": token, "reason": " "})
    assert empty.status_code == 400 and b"needs a reason" in empty.content
    done = approver.post(
        f"/staff/refunds/{refund.pk}/reject/", {"token": token, "reason": "not our fault"}
    )
    assert done.status_code == 302
    refund.refresh_from_db()
    refund.order.refresh_from_db()
    assert (refund.status, refund.decision_note) == (Refund.Status.REJECTED, "not our fault")
    assert refund.order.amount_refunded == 0
    # and deciding again is a clear message, not a 500
    page = approver.get(f"/staff/refunds/{refund.pk}/approve/")
    assert b"nothing to decide" in page.content


# --- campaigns --------------------------------------------------------------------------------


def test_campaign_create_fund_pause_resume_close(fake_gateway: FakeGateway) -> None:
    from ledger.services import transaction_post

    transaction_post(
        postings=[
            {"source": "world", "destination": "platform:marketing", "asset": "USD/2", "amount": 1}
        ]
    )
    client, marketer = signed_in("mk", roles=(MARKETING,))
    values = {
        "code": "spring10",
        "name": "Spring",
        "budget": "500.00",
        "percent_off": "10%",
        "per_order_cap": "5.00",
    }
    # create: review, then confirm (twice: one campaign)
    review = client.post("/staff/campaigns/new/", {**values, "action": "preview"})
    assert b"Confirm: create SPRING10" in review.content and Campaign.objects.count() == 0
    token = form_token(review.content.decode())
    created = client.post("/staff/campaigns/new/", {**values, "action": "confirm", "token": token})
    client.post("/staff/campaigns/new/", {**values, "action": "confirm", "token": token})
    campaign = Campaign.objects.get()
    assert created["Location"] == f"/staff/campaigns/{campaign.pk}/"
    assert (campaign.code, campaign.budget, campaign.per_order_cap) == ("SPRING10", 50000, 500)
    url = f"/staff/campaigns/{campaign.pk}/"
    # fund: over budget refused, then 200.00 previewed and confirmed twice: funded once
    over = client.post(url + "fund/", {"amount": "500.01", "action": "preview"})
    assert over.status_code == 400 and b"would exceed the budget" in over.content
    page = client.post(url + "fund/", {"amount": "200", "action": "preview"})
    assert b"platform:marketing" in page.content and CampaignFunding.objects.count() == 0
    token = form_token(page.content.decode())
    for _ in range(2):
        client.post(url + "fund/", {"amount": "200", "action": "confirm", "token": token})
    assert CampaignFunding.objects.count() == 1
    assert balance_get(address="coupons:SPRING10", asset="USD/2") == 20000
    html = client.get(url).content.decode()
    assert 'data-k="funded">USD 200.00<' in html and 'data-k="remaining">USD 200.00<' in html
    assert (
        "<svg" in html
        and "kozea.github.io" not in html
        and "<script" not in html.split("<figure")[1].split("</figure>")[0]
    )
    # pause / resume
    for action, paused in (("pause", True), ("resume", False)):
        token = form_token(client.get(url + f"{action}/").content.decode())
        client.post(url + f"{action}/", {"action": "confirm", "token": token})
        campaign.refresh_from_db()
        assert campaign.paused is paused
    # close: the remaining balance goes back
    page = client.get(url + "close/")
    assert b"USD 200.00" in page.content
    client.post(url + "close/", {"action": "confirm", "token": form_token(page.content.decode())})
    campaign.refresh_from_db()
    assert campaign.closed_at is not None
    assert balance_get(address="coupons:SPRING10", asset="USD/2") == 0
    # a closed campaign takes no funding: a message, not a 500
    refused = client.post(url + "fund/", {"amount": "1", "action": "preview"})
    assert refused.status_code in (200, 400, 409)
    actions = list(
        AuditEntry.objects.filter(object_type="marketplace.campaign")
        .order_by("id")
        .values_list("action", "actor_label")
    )
    assert actions == [
        ("campaign.create", "mk"),
        ("campaign.fund", "mk"),
        ("campaign.pause", "mk"),
        ("campaign.resume", "mk"),
        ("campaign.close", "mk"),
    ]
    assert marketer.has_perm("marketplace.manage_campaigns")


def test_campaign_create_refuses_bad_input(fake_gateway: FakeGateway) -> None:
    CampaignFactory(code="TAKEN")
    client, _ = signed_in("mk", roles=(MARKETING,))
    base = {"code": "NEW1", "budget": "10", "percent_off": "10%", "per_order_cap": "1"}
    for values in (
        {"code": "TAKEN"},
        {"budget": "-1"},
        {"per_order_cap": "x"},
        {"starts_at": "yesterday"},
        {"starts_at": "2030-01-02T00:00", "ends_at": "2030-01-01T00:00"},
    ):
        review = client.post("/staff/campaigns/new/", {**base, **values, "action": "preview"})
        if review.status_code == 200:  # the service refuses it at confirmation
            token = form_token(review.content.decode())
            review = client.post(
                "/staff/campaigns/new/", {**base, **values, "action": "confirm", "token": token}
            )
        assert review.status_code == 400, values
        assert b'data-testid="error"' in review.content
    assert Campaign.objects.count() == 1
