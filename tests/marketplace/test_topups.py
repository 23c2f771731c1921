"""The `topup.succeeded` webhook: its prepare step fetches the top-up from Stripe and the
books follow what Stripe says, not the payload. Stripe is faked at the seam."""

from __future__ import annotations

from typing import Any

import pytest

from ledger.selectors import balance_get, transactions_list
from marketplace.models import Anomaly, Topup
from marketplace.services.treasury import topup_create
from stripe_gateway.models import StripeEvent
from tests.marketplace.fakes import FakeGateway, fake_gateway, topup
from tests.marketplace.flows import event, process

__all__ = ["fake_gateway"]

pytestmark = pytest.mark.django_db
USD = "USD/2"


def bal(address: str) -> int:
    return balance_get(address=address, asset=USD)


def test_the_books_follow_the_fetched_top_up_not_the_payload(fake_gateway: FakeGateway) -> None:
    # given: Stripe has a 5,000 top-up; the event's payload says something else
    stripe_topup = fake_gateway.add(topup(amount=5_000))
    payload = event("topup.succeeded", stripe_topup | {"amount": 999_999, "currency": "eur"})

    # when
    outcome = process(payload)

    # then
    assert outcome.status == "processed"
    assert fake_gateway.calls == [("topup_retrieve", {"id": stripe_topup["id"]})]
    tx = transactions_list(reference=f"topup:{stripe_topup['id']}").get()
    assert tx.metadata == {
        "stripe_object": stripe_topup["id"],
        "stripe_balance_transaction": stripe_topup["balance_transaction"],
        "flow": "topup",
    }
    assert (bal("bank:platform"), bal("stripe:balance")) == (5_000, -5_000)
    assert balance_get(address="bank:platform", asset="EUR/2") == 0


def test_a_redelivery_books_nothing_more(fake_gateway: FakeGateway) -> None:
    # given
    stripe_topup = fake_gateway.add(topup(amount=5_000))
    process(event("topup.succeeded", stripe_topup))
    books = transactions_list().count()

    # when: another delivery (a new event id for the same top-up)
    outcome = process(event("topup.succeeded", stripe_topup))

    # then
    assert outcome.status == "processed"
    assert transactions_list().count() == books
    assert bal("bank:platform") == 5_000


def test_a_submitted_top_up_succeeds_by_the_webhook(
    fake_gateway: FakeGateway, monkeypatch: pytest.MonkeyPatch
) -> None:
    # given: Stripe answered the create with a pending top-up
    real_create = fake_gateway.topup_create

    def pending_create(**kwargs: Any) -> dict[str, Any]:
        created = real_create(**kwargs)
        fake_gateway.objects[created["id"]]["status"] = "pending"
        return created | {"status": "pending"}

    monkeypatch.setattr(fake_gateway, "topup_create", pending_create)
    row = topup_create(amount=20_000)
    assert (row.status, bal("bank:platform")) == (Topup.Status.SUBMITTED, 0)

    # when: Stripe says it succeeded
    fake_gateway.objects[row.stripe_topup_id]["status"] = "succeeded"
    outcome = process(event("topup.succeeded", fake_gateway.objects[row.stripe_topup_id]))

    # then
    row.refresh_from_db()
    assert outcome.status == "processed"
    assert row.status == Topup.Status.SUCCEEDED
    assert transactions_list(reference=f"topup:{row.stripe_topup_id}").count() == 1
    assert bal("bank:platform") == 20_000


def test_a_top_up_stripe_does_not_know_is_flagged_and_not_booked(
    fake_gateway: FakeGateway,
) -> None:
    # given: an event for a top-up the fetch cannot find
    payload = event("topup.succeeded", topup(amount=7_000))

    # when
    outcome = process(payload)

    # then
    assert outcome.status == "ignored"
    anomaly = Anomaly.objects.get(kind="unknown_topup")
    assert (anomaly.stripe_object, anomaly.stripe_event_id) == (
        payload["data"]["object"]["id"],
        payload["id"],
    )
    assert transactions_list().count() == 0


def test_a_top_up_still_pending_at_stripe_is_deferred(fake_gateway: FakeGateway) -> None:
    # given
    stripe_topup = fake_gateway.add(topup(amount=5_000) | {"status": "pending"})

    # when
    outcome = process(event("topup.succeeded", stripe_topup | {"status": "succeeded"}))

    # then
    assert outcome.status == "deferred"
    assert transactions_list().count() == 0


@pytest.mark.parametrize("status", ["failed", "canceled", "reversed"])
def test_a_top_up_that_did_not_succeed_is_not_booked(
    fake_gateway: FakeGateway, status: str
) -> None:
    # given: the payload says succeeded, Stripe says otherwise
    stripe_topup = fake_gateway.add(topup(amount=5_000) | {"status": status})
    payload = event("topup.succeeded", stripe_topup | {"status": "succeeded"})

    # when
    outcome = process(payload)

    # then
    assert outcome.status == "ignored"
    row = StripeEvent.objects.get(stripe_id=payload["id"])
    assert row.last_error == f"top-up {stripe_topup['id']} is {status}: not booked"
    assert transactions_list().count() == 0
