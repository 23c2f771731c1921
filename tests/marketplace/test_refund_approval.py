"""Four-eyes approval of refunds above REFUNDS_APPROVAL_THRESHOLD, the refund preview (a dry
run of the refund flow), through the services and the API."""

from __future__ import annotations

import threading
from typing import Any

import pytest
from django.db import connection

from audit.models import AuditEntry
from ledger.models import Transaction
from marketplace.models import Order, Refund
from marketplace.services.errors import InvalidState, RefundTooLarge, SelfApproval
from marketplace.services.orders import order_deliver
from marketplace.services.refunds import (
    refund_approve,
    refund_issue,
    refund_preview,
    refund_reject,
)
from tests.auth import make_user, token_client
from tests.marketplace.factories import RestaurantFactory, RiderFactory
from tests.marketplace.fakes import FakeGateway, fake_gateway
from tests.marketplace.flows import pay, placed_order

__all__ = ["fake_gateway"]

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def threshold(settings: Any) -> None:
    settings.REFUNDS_APPROVAL_THRESHOLD = {"USD/2": 5000}


def paid(fake: FakeGateway, subtotal: int = 9000) -> Order:
    order, intent = placed_order(
        fake, restaurant_id=RestaurantFactory().pk, subtotal=subtotal, delivery_fee=600
    )
    pay(fake, order, intent)
    return order


def test_a_refund_at_the_threshold_goes_to_stripe_at_once(fake_gateway: FakeGateway) -> None:
    order = paid(fake_gateway)
    agent = make_user("agent", roles=["Support"])
    refund = refund_issue(order_id=order.pk, amount=5000, requested_by=agent)
    assert refund.status == Refund.Status.SUBMITTED
    assert len(fake_gateway.calls_of("refund_create")) == 1


def test_above_the_threshold_nothing_reaches_stripe_until_a_second_person_approves(
    fake_gateway: FakeGateway,
) -> None:
    # given
    order = paid(fake_gateway)
    agent = make_user("agent", roles=["Support"])
    finance = make_user("fin", roles=["Finance"])

    # when: requested
    refund = refund_issue(order_id=order.pk, amount=5001, requested_by=agent)

    # then: awaiting, the amount claimed, nothing sent
    assert refund.status == Refund.Status.AWAITING_APPROVAL
    assert fake_gateway.calls_of("refund_create") == []
    order.refresh_from_db()
    assert order.amount_refunded == 5001

    # when: the requester tries, then Finance approves
    with pytest.raises(SelfApproval):
        refund_approve(refund_id=refund.pk, actor=agent)
    approved = refund_approve(refund_id=refund.pk, actor=finance, note="ok")

    # then
    assert approved.status == Refund.Status.SUBMITTED
    assert approved.decided_by == finance
    call = fake_gateway.calls_of("refund_create")
    assert len(call) == 1 and call[0]["idempotency_key"] == f"refund:{refund.pk}"
    assert list(
        AuditEntry.objects.filter(object_id=str(refund.pk)).values_list("action", "actor_label")
    ) == [("refund.approve", "fin"), ("refund.request", "agent")]

    # when: approved again
    with pytest.raises(InvalidState) as again:
        refund_approve(refund_id=refund.pk, actor=finance)
    assert again.value.code == "refund_not_awaiting_approval"


def test_reject_frees_the_refundable_amount_and_sends_nothing(fake_gateway: FakeGateway) -> None:
    order = paid(fake_gateway)
    agent = make_user("agent", roles=["Support"])
    finance = make_user("fin", roles=["Finance"])
    refund = refund_issue(order_id=order.pk, amount=9600, requested_by=agent)
    with pytest.raises(RefundTooLarge):
        refund_issue(order_id=order.pk, amount=1, requested_by=agent, request_key="other")

    rejected = refund_reject(refund_id=refund.pk, actor=finance, reason="customer got a redelivery")

    assert rejected.status == Refund.Status.REJECTED
    assert rejected.decision_note == "customer got a redelivery"
    order.refresh_from_db()
    assert order.amount_refunded == 0 and order.refundable == 9600
    assert fake_gateway.calls_of("refund_create") == []
    with pytest.raises(InvalidState):
        refund_approve(refund_id=refund.pk, actor=finance)


def test_zero_threshold_means_every_refund_and_unknown_assets_need_approval(
    fake_gateway: FakeGateway, settings: Any
) -> None:
    settings.REFUNDS_APPROVAL_THRESHOLD = {"USD/2": 0}
    order = paid(fake_gateway)
    assert refund_issue(order_id=order.pk, amount=1).status == Refund.Status.AWAITING_APPROVAL
    settings.REFUNDS_APPROVAL_THRESHOLD = {"EUR/2": 10**9}
    assert (
        refund_issue(order_id=order.pk, amount=2, request_key="b").status
        == Refund.Status.AWAITING_APPROVAL
    )


@pytest.mark.django_db(transaction=True)
def test_concurrent_approvals_exactly_one_wins(fake_gateway: FakeGateway) -> None:
    # given
    order = paid(fake_gateway)
    agent = make_user("agent", roles=["Support"])
    deciders = [make_user(f"fin{i}", roles=["Finance"]) for i in range(4)]
    refund = refund_issue(order_id=order.pk, amount=6000, requested_by=agent)
    barrier = threading.Barrier(len(deciders))
    outcomes: list[str] = []

    def decide(user: Any) -> None:
        try:
            barrier.wait()
            refund_approve(refund_id=refund.pk, actor=user)
            outcomes.append("approved")
        except InvalidState:
            outcomes.append("refused")
        finally:
            connection.close()

    # when
    threads = [threading.Thread(target=decide, args=(u,)) for u in deciders]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    # then
    assert sorted(outcomes) == ["approved", "refused", "refused", "refused"]
    assert len(fake_gateway.calls_of("refund_create")) == 1
    assert AuditEntry.objects.filter(action="refund.approve").count() == 1


def test_preview_is_the_exact_booking_and_writes_nothing(fake_gateway: FakeGateway) -> None:
    # given: a delivered order (the bearers pay)
    order = paid(fake_gateway)
    order_deliver(order_id=order.pk, rider_id=RiderFactory().pk)
    before = Transaction.objects.count()

    # when
    preview = refund_preview(
        order_id=order.pk, amount=1000, bearer="shared", restaurant_share="50%", rider_share="0%"
    )

    # then
    assert Transaction.objects.count() == before
    assert preview.needs_approval is False and preview.refundable == 9600
    assert (
        sum(p["amount"] for p in preview.postings if p["destination"] == "stripe:balance") == 1000
    )
    sources = {p["source"]: p["amount"] for p in preview.postings}
    assert sources[order.restaurant.ledger_address] == 500
    assert sources["platform:losses"] == 500


def test_preview_refuses_what_the_request_refuses(fake_gateway: FakeGateway) -> None:
    order = paid(fake_gateway)
    with pytest.raises(RefundTooLarge):
        refund_preview(order_id=order.pk, amount=9601)


def test_api_approve_and_reject(fake_gateway: FakeGateway) -> None:
    # given
    order = paid(fake_gateway)
    agent = token_client(make_user("agent", roles=["Support"]))
    finance = token_client(make_user("fin", roles=["Finance"]))
    created = agent.post(
        f"/api/v1/orders/{order.pk}/refunds/", {"amount": 7000, "bearer": "platform"}, format="json"
    ).json()
    assert created["status"] == "awaiting_approval"

    # when / then: the requester (no permission) 403, self-approval 403, not awaiting 409
    assert (
        agent.post(f"/api/v1/refunds/{created['id']}/approve/", {}, format="json").status_code
        == 403
    )
    self_approver = token_client(Refund.objects.get().requested_by)
    Refund.objects.get().requested_by.groups.add(*make_user("x", roles=["Finance"]).groups.all())
    denied = self_approver.post(f"/api/v1/refunds/{created['id']}/approve/", {}, format="json")
    assert denied.status_code == 403 and denied.json()["code"] == "self_approval"
    ok = finance.post(f"/api/v1/refunds/{created['id']}/approve/", {}, format="json")
    assert ok.status_code == 200 and ok.json()["status"] == "submitted"
    late = finance.post(
        f"/api/v1/refunds/{created['id']}/reject/", {"reason": "too late"}, format="json"
    )
    assert late.status_code == 409
    missing = finance.post("/api/v1/refunds/99999999/approve/", {}, format="json")
    assert missing.status_code == 404
