"""Each hole found when trying the product as staff and as a service account, reproduced and
shown closed (issue "Only named permissions move money")."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from io import StringIO
from typing import Any

import pytest
from django.contrib.auth.models import Group
from django.core.management import CommandError, call_command
from django.db import DatabaseError, connection, transaction
from django.test import Client
from django.utils import timezone
from knox.models import AuthToken
from rest_framework.test import APIClient

from audit.models import AuditEntry
from ledger.models import Transaction
from ledger.selectors import balance_get
from ledger.services import transaction_post
from marketplace.models import Order, Refund
from marketplace.services.orders import order_deliver
from reconciliation.models import ReconciliationItem, ReconciliationRun
from staff.roles import SERVICE_ACCOUNT
from tests.auth import make_user, session_client, token_client
from tests.marketplace.factories import CampaignFactory, RestaurantFactory, RiderFactory
from tests.marketplace.fakes import FakeGateway, fake_gateway
from tests.marketplace.flows import pay, placed_order

__all__ = ["fake_gateway"]

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _guards(stripe_atomic_violations: list[str], celery_eager: None, settings: Any) -> None:
    settings.LEDGER_SEAL_ON_COMMIT = False


def paid_order(fake: FakeGateway, **kwargs: Any) -> Order:
    restaurant = kwargs.pop("restaurant", None) or RestaurantFactory()
    order, intent = placed_order(
        fake, restaurant_id=restaurant.pk, subtotal=4000, delivery_fee=600, **kwargs
    )
    pay(fake, order, intent)
    return order


# --- a token alone minted money -------------------------------------------------------------


def test_a_token_without_the_permission_cannot_mint_money_or_revert() -> None:
    # given: a non-staff user with an API token, and a real transaction
    client = token_client(make_user("leaked", staff=False))
    tx = transaction_post(
        postings=[
            {"source": "world", "destination": "platform:marketing", "asset": "USD/2", "amount": 5}
        ]
    ).transaction
    before = Transaction.objects.count()

    # when
    minted = client.post(
        "/api/v1/ledger/transactions/",
        {
            "postings": [
                {
                    "source": "world",
                    "destination": "restaurants:999",
                    "asset": "USD/2",
                    "amount": 100000,
                }
            ]
        },
        format="json",
    )
    reverted = client.post(f"/api/v1/ledger/transactions/{tx.pk}/revert/", {}, format="json")

    # then
    assert minted.status_code == 403
    assert minted.json()["message"] == "This action needs the permission ledger.post_transaction."
    assert reverted.status_code == 403
    assert Transaction.objects.count() == before
    assert balance_get(address="restaurants:999", asset="USD/2") == 0


def test_a_ledger_post_by_api_leaves_an_audit_row_in_the_same_transaction() -> None:
    # given
    user = make_user("fa", roles=["Finance admin"])
    client = token_client(user)

    # when
    response = client.post(
        "/api/v1/ledger/transactions/",
        {
            "postings": [
                {"source": "world", "destination": "bank:platform", "asset": "USD/2", "amount": 700}
            ]
        },
        format="json",
        HTTP_X_REQUEST_ID="req-42",
        REMOTE_ADDR="10.1.2.3",
    )

    # then
    assert response.status_code == 201
    entry = AuditEntry.objects.get()
    assert (entry.actor_id, entry.actor_label, entry.action) == (user.pk, "fa", "ledger.post")
    assert entry.object_id == str(response.json()["transaction"]["id"])
    assert (entry.request_id, entry.ip, entry.via) == ("req-42", "10.1.2.3", "api")
    assert entry.data["postings"][0]["amount"] == 700
    assert response["X-Request-ID"] == "req-42"


@pytest.mark.parametrize("given", [None, "a:colon", "x" * 100], ids=["none", "colon", "long"])
def test_the_audit_row_carries_the_request_id_the_response_and_the_logs_carry(
    given: str | None,
) -> None:
    # given: no X-Request-ID, or one only one of the two middlewares used to accept
    client = token_client(make_user("fa", roles=["Finance admin"]))
    extra = {} if given is None else {"HTTP_X_REQUEST_ID": given}
    # when
    response = client.post(
        "/api/v1/ledger/transactions/",
        {
            "postings": [
                {"source": "world", "destination": "bank:platform", "asset": "USD/2", "amount": 5}
            ]
        },
        format="json",
        **extra,
    )
    # then: one id for the request (the audit column keeps its first 64 characters)
    assert response.status_code == 201
    echoed = response["X-Request-ID"]
    assert AuditEntry.objects.get().request_id == echoed[:64]
    if given == "x" * 100:
        assert echoed == given


def test_a_dry_run_or_a_replay_writes_no_audit_row() -> None:
    client = token_client(make_user("fa", roles=["Finance admin"]))
    body = {
        "postings": [
            {"source": "world", "destination": "bank:platform", "asset": "USD/2", "amount": 1}
        ],
        "reference": "r-1",
    }
    client.post("/api/v1/ledger/transactions/", {**body, "dry_run": True}, format="json")
    client.post("/api/v1/ledger/transactions/", body, format="json")
    replay = client.post("/api/v1/ledger/transactions/", body, format="json")
    assert replay.json()["replayed"] is True
    assert AuditEntry.objects.filter(action="ledger.post").count() == 1


# --- repairs applied by a view-only user, with no confirmation --------------------------------


@pytest.fixture
def run_with_fee_repair() -> ReconciliationRun:
    now = timezone.now()
    run = ReconciliationRun.objects.create(
        window_start=now - timedelta(days=1), window_end=now, status="succeeded", problems=1
    )
    ReconciliationItem.objects.create(
        run=run,
        key="ch_1",
        asset="USD/2",
        outcome="matched",
        safe=True,
        repair_status="pending",
        repair={
            "action": "book_fee",
            "asset": "USD/2",
            "amount": 59,
            "balance_transaction": "txn_1",
            "stripe_object": "ch_1",
            "timestamp": datetime(2026, 11, 1, tzinfo=UTC).isoformat(),
        },
    )
    return run


def _admin_post(user: Any, run: ReconciliationRun, **extra: str) -> Any:
    client = Client()
    client.force_login(user)
    return client.post(
        "/admin/reconciliation/reconciliationrun/",
        {"action": "apply_safe_repairs", "_selected_action": [str(run.pk)], **extra},
    )


def test_a_view_only_user_cannot_apply_repairs_from_the_admin(run_with_fee_repair) -> None:
    # given: staff who may only view runs
    viewer = make_user("viewer", perms=["reconciliation.view_reconciliationrun"])

    # when
    response = _admin_post(viewer, run_with_fee_repair, confirmed="yes")

    # then: the action is not offered, nothing is booked
    assert response.status_code in (200, 302)
    assert ReconciliationItem.objects.get().repair_status == "pending"
    assert not Transaction.objects.filter(reference="stripe-fee:txn_1").exists()
    assert not AuditEntry.objects.exists()


def test_repairs_from_the_admin_show_what_they_will_do_then_apply_once_confirmed(
    run_with_fee_repair,
) -> None:
    # given
    finance = make_user("fin", roles=["Finance"])

    # when: the first post only asks
    page = _admin_post(finance, run_with_fee_repair)

    # then
    assert page.status_code == 200
    import re

    assert "1 x book_fee" in page.content.decode(), re.findall(
        "<li>.*?</li>", page.content.decode()
    )
    assert b"Yes, I'm sure" in page.content
    assert ReconciliationItem.objects.get().repair_status == "pending"

    # when: confirmed
    _admin_post(finance, run_with_fee_repair, confirmed="yes")

    # then
    assert ReconciliationItem.objects.get().repair_status == "applied"
    assert Transaction.objects.filter(reference="stripe-fee:txn_1").count() == 1
    entry = AuditEntry.objects.get(action="reconciliation.repairs")
    assert (entry.actor_label, entry.via, entry.data["applied"]) == ("fin", "admin", 1)


def test_repair_command_acting_as_a_user_checks_the_permission(run_with_fee_repair) -> None:
    make_user("viewer", perms=["reconciliation.view_reconciliationrun"])
    with pytest.raises(CommandError, match=r"lacks the permission reconciliation\.apply_repairs"):
        call_command(
            "reconcile",
            "--run",
            str(run_with_fee_repair.pk),
            "--repair",
            "--no-import",
            "--as",
            "viewer",
            stdout=StringIO(),
        )
    assert ReconciliationItem.objects.get().repair_status == "pending"


def test_payouts_command_acting_as_a_user_checks_the_permission() -> None:
    make_user("support", roles=["Support"])
    with pytest.raises(CommandError, match=r"lacks the permission payouts\.manage_payouts"):
        call_command("payouts", "run", "--as", "support", stdout=StringIO())


# --- a second hold path -----------------------------------------------------------------------


def test_the_marketplace_hold_endpoint_is_gone_and_the_payouts_one_keeps_history() -> None:
    # given
    restaurant = RestaurantFactory()
    client = token_client(make_user("fin", roles=["Finance"]))

    # when
    old = client.post(
        f"/api/v1/restaurants/{restaurant.pk}/hold/", {"on_hold": True}, format="json"
    )
    new = client.post(
        f"/api/v1/payouts/payees/restaurant/{restaurant.pk}/hold/", {"reason": "kyc"}, format="json"
    )

    # then
    assert old.status_code == 404
    assert new.status_code == 200
    restaurant.refresh_from_db()
    assert restaurant.payouts_on_hold is True
    assert restaurant.ledger_address
    entry = AuditEntry.objects.get(action="payee.hold")
    assert (entry.actor_label, entry.object_id, entry.data["reason"]) == (
        "staff:fin",
        str(restaurant.pk),
        "kyc",
    )


# --- double refunds ---------------------------------------------------------------------------


def test_a_double_submitted_refund_without_a_key_refunds_once(fake_gateway: FakeGateway) -> None:
    # given: a client (a double-clicked button, a retry after a timeout) posts the same
    # refund twice, without an idempotency key
    order = paid_order(fake_gateway)
    client = token_client(make_user("agent", roles=["Support"]))

    # when
    first = client.post(
        f"/api/v1/orders/{order.pk}/refunds/", {"amount": 1000, "bearer": "platform"}, format="json"
    )
    second = client.post(
        f"/api/v1/orders/{order.pk}/refunds/", {"amount": 1000, "bearer": "platform"}, format="json"
    )

    # then
    assert first.status_code == second.status_code == 201, first.json()
    assert first.json()["id"] == second.json()["id"]
    assert Refund.objects.count() == 1
    assert len(fake_gateway.calls_of("refund_create")) == 1
    order.refresh_from_db()
    assert order.amount_refunded == 1000
    assert AuditEntry.objects.filter(action="refund.request").count() == 1


def test_two_agents_or_distinct_keys_are_distinct_refunds(fake_gateway: FakeGateway) -> None:
    order = paid_order(fake_gateway)
    a = token_client(make_user("a", roles=["Support"]))
    b = token_client(make_user("b", roles=["Support"]))
    url = f"/api/v1/orders/{order.pk}/refunds/"
    a.post(url, {"amount": 500, "bearer": "platform"}, format="json")
    b.post(url, {"amount": 500, "bearer": "platform"}, format="json")
    a.post(url, {"amount": 500, "bearer": "platform", "idempotency_key": "k2"}, format="json")
    assert Refund.objects.count() == 3


def test_the_duplicate_window_ends(fake_gateway: FakeGateway, settings: Any) -> None:
    settings.REFUNDS_DUPLICATE_WINDOW = 600
    order = paid_order(fake_gateway)
    client = token_client(make_user("agent", roles=["Support"]))
    url = f"/api/v1/orders/{order.pk}/refunds/"
    client.post(url, {"amount": 500, "bearer": "platform"}, format="json")
    Refund.objects.update(created_at=timezone.now() - timedelta(seconds=601))
    client.post(url, {"amount": 500, "bearer": "platform"}, format="json")
    assert Refund.objects.count() == 2


# --- staff without a permission moved money ---------------------------------------------------


def test_staff_without_a_role_cannot_refund_fund_or_top_up(fake_gateway: FakeGateway) -> None:
    order = paid_order(fake_gateway)
    campaign = CampaignFactory()
    client = token_client(make_user("staffer"))
    refund = client.post(f"/api/v1/orders/{order.pk}/refunds/", {"amount": 4000}, format="json")
    fund = client.post(
        f"/api/v1/campaigns/{campaign.pk}/fund/", {"amount": 99_999_999}, format="json"
    )
    topup = client.post("/api/v1/topups/", {"amount": 300_000}, format="json")
    assert [refund.status_code, fund.status_code, topup.status_code] == [403, 403, 403]
    assert Refund.objects.count() == 0 and fake_gateway.calls_of("topup_create") == []
    # reads stay open to staff
    assert client.get(f"/api/v1/orders/{order.pk}/").status_code == 200


# --- the commission a ledger writer could change ----------------------------------------------


def test_commission_in_ledger_metadata_does_not_change_the_split(fake_gateway: FakeGateway) -> None:
    # given: a 15% restaurant, and someone sets its ledger metadata to 0%
    restaurant = RestaurantFactory(commission="15%")
    order = paid_order(fake_gateway, restaurant=restaurant)
    ledger_writer = token_client(make_user("fa", roles=["Finance admin"]))
    ledger_writer.post(
        f"/api/v1/ledger/accounts/{restaurant.ledger_address}/metadata/",
        {"commission": "0%"},
        format="json",
    )

    # when
    order_deliver(order_id=order.pk, rider_id=RiderFactory().pk)

    # then: the split takes the 15% the API shows
    assert balance_get(address="platform:fees", asset="USD/2") == 600  # 15% of 4000
    shown = ledger_writer.get(f"/api/v1/restaurants/{restaurant.pk}/").json()["commission"]
    assert shown == "15%"


# --- tokens -----------------------------------------------------------------------------------


def test_tokens_are_stored_hashed_expire_and_can_be_revoked() -> None:
    # given: a service account and its token, issued by the command
    out, err = StringIO(), StringIO()
    call_command("api_token", "issue", "orders-svc", "--service-account", stdout=out, stderr=err)
    token = out.getvalue().strip()
    user = AuthToken.objects.get().user
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {token}")

    # then: hashed at rest, expiring, in the service account group only
    stored = AuthToken.objects.get()
    assert token not in (stored.digest, stored.token_key) and stored.digest != token
    assert stored.expiry > timezone.now() + timedelta(days=80)
    assert list(user.groups.values_list("name", flat=True)) == [SERVICE_ACCOUNT]
    assert not user.is_staff and not user.has_usable_password()
    assert client.get("/api/v1/orders/").status_code == 200  # a read its role allows
    assert client.post("/api/v1/topups/", {"amount": 1}, format="json").status_code == 403

    # when: expired
    AuthToken.objects.update(expiry=timezone.now() - timedelta(seconds=1))
    assert client.get("/api/v1/orders/").status_code == 401

    # when: revoked
    call_command("api_token", "issue", "orders-svc", stdout=StringIO(), stderr=StringIO())
    call_command("api_token", "revoke", "orders-svc", stdout=StringIO())
    assert not AuthToken.objects.exists()
    assert AuditEntry.objects.filter(action__startswith="token.").count() == 3


def test_roles_exist_with_their_permissions() -> None:
    from tests.auth import roles_ensure

    roles_ensure()
    support = make_user("s", roles=["Support"])
    finance_admin = make_user("fa", roles=["Finance admin"])
    assert support.has_perm("marketplace.request_refund")
    assert not support.has_perm("marketplace.approve_refund")
    assert finance_admin.has_perm("ledger.revert_transaction")
    assert set(Group.objects.values_list("name", flat=True)) >= {
        "Support",
        "Marketing",
        "Finance",
        "Finance admin",
        SERVICE_ACCOUNT,
    }


# --- audit is append-only ---------------------------------------------------------------------


def test_the_database_refuses_to_change_or_delete_audit_rows() -> None:
    from audit.services import audit_record

    entry = audit_record(actor="system", action="test.action")
    for statement in (
        f"UPDATE audit_auditentry SET action = 'x' WHERE id = {entry.pk}",
        f"DELETE FROM audit_auditentry WHERE id = {entry.pk}",
        "TRUNCATE audit_auditentry",
    ):
        with (
            pytest.raises(DatabaseError, match="append-only"),
            transaction.atomic(),
            connection.cursor() as cursor,
        ):
            cursor.execute(statement)
    assert AuditEntry.objects.get().action == "test.action"


def test_campaign_actions_are_audited() -> None:
    client = session_client(make_user("mk", roles=["Marketing"]))
    transaction_post(
        postings=[
            {
                "source": "world",
                "destination": "platform:marketing",
                "asset": "USD/2",
                "amount": 10**6,
            }
        ]
    )
    created = client.post(
        "/api/v1/campaigns/",
        {"code": "SPRING", "budget": 50000, "per_order_cap": 500},
        format="json",
    ).json()
    client.post(f"/api/v1/campaigns/{created['id']}/fund/", {"amount": 20000}, format="json")
    client.post(f"/api/v1/campaigns/{created['id']}/pause/", {}, format="json")
    client.post(f"/api/v1/campaigns/{created['id']}/resume/", {}, format="json")
    actions = list(AuditEntry.objects.order_by("id").values_list("action", "amount", "actor_label"))
    assert actions == [
        ("campaign.create", 50000, "mk"),
        ("campaign.fund", 20000, "mk"),
        ("campaign.pause", None, "mk"),
        ("campaign.resume", None, "mk"),
    ]


def test_payouts_admin_hold_needs_the_permission_a_reason_and_a_confirmation() -> None:
    # given
    from payouts.models import PayeeHoldChange, PayoutPayee
    from tests.payouts.helpers import make_payee

    payee = make_payee("restaurant", balance=0, onboard=False)
    row = PayoutPayee.objects.create(
        kind="restaurant", payee_id=payee.pk, address=payee.ledger_address
    )
    url = "/admin/payouts/payoutpayee/"
    form = {"action": "hold", "_selected_action": [str(row.pk)]}
    viewer = Client()
    viewer.force_login(make_user("v", perms=["payouts.view_payoutpayee"]))
    finance = Client()
    finance.force_login(make_user("fin", roles=["Finance"]))

    # when: without the permission, confirmed or not
    viewer.post(url, {**form, "confirmed": "yes", "reason": "x"})
    # then
    assert not PayeeHoldChange.objects.exists()

    # when: with it, the first post asks, a confirmation without a reason asks again
    asked = finance.post(url, form)
    no_reason = finance.post(url, {**form, "confirmed": "yes"})
    # then
    assert b"Hold these payees" in asked.content
    assert b"A reason is required" in no_reason.content
    assert not PayeeHoldChange.objects.exists()

    # when: confirmed with a reason
    finance.post(url, {**form, "confirmed": "yes", "reason": "chargeback spike"})
    # then
    hold = PayeeHoldChange.objects.get()
    assert (hold.on_hold, hold.reason, hold.actor) == (True, "chargeback spike", "staff:fin")
    assert AuditEntry.objects.get(action="payee.hold").via == "admin"
