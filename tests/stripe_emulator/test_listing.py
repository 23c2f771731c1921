"""Stripe list semantics: newest first, cursors, has_more, filters and expand[]."""

from __future__ import annotations

from typing import Any

import pytest
import stripe

from stripe_emulator import EmulatorServer

from .conftest import helper, pay


def _src(txn: stripe.BalanceTransaction) -> Any:
    """The expanded `source` (typed by stripe as a union of every source type)."""
    assert not isinstance(txn.source, str | None)
    return txn.source


def test_auto_paging_iter_walks_250_objects_newest_first(client: stripe.StripeClient) -> None:
    # given
    created = [
        client.v1.topups.create(params={"amount": i + 1, "currency": "usd"}).balance_transaction
        for i in range(250)
    ]

    # when
    page = client.v1.balance_transactions.list(params={"limit": 100})
    walked = [t.id for t in page.auto_paging_iter()]

    # then
    assert len(page.data) == 100
    assert page.has_more is True
    assert page.url == "/v1/balance_transactions"
    assert walked == list(reversed(created))
    assert len(set(walked)) == 250


def test_default_limit_is_10_and_limit_is_capped(client: stripe.StripeClient) -> None:
    for i in range(12):
        client.v1.customers.create(params={"email": f"c{i}@example.com"})
    page = client.v1.customers.list()
    assert len(page.data) == 10
    assert page.has_more is True
    with pytest.raises(stripe.InvalidRequestError) as caught:
        client.v1.customers.list(params={"limit": 101})
    assert caught.value.param == "limit"


def test_starting_after_and_ending_before(client: stripe.StripeClient) -> None:
    ids = [client.v1.customers.create(params={"name": str(i)}).id for i in range(7)]
    newest_first = list(reversed(ids))

    after = client.v1.customers.list(params={"limit": 3, "starting_after": newest_first[2]})
    assert [c.id for c in after.data] == newest_first[3:6]
    assert after.has_more is True

    before = client.v1.customers.list(params={"limit": 2, "ending_before": newest_first[4]})
    assert [c.id for c in before.data] == newest_first[2:4]
    assert before.has_more is True

    backwards = client.v1.customers.list(params={"limit": 2, "ending_before": newest_first[6]})
    walked = [c.id for c in backwards.auto_paging_iter()]
    assert walked == list(reversed(newest_first[:6]))  # oldest to newest, as stripe-python does

    with pytest.raises(stripe.InvalidRequestError) as caught:
        client.v1.customers.list(params={"starting_after": "cus_unknown"})
    assert caught.value.param == "starting_after"


def test_created_filters(client: stripe.StripeClient, emulator: EmulatorServer) -> None:
    # given: three batches one hour apart on the emulator clock
    batches: list[list[str]] = []
    stamps: list[int] = []
    for _ in range(3):
        batch = [
            client.v1.topups.create(params={"amount": 100, "currency": "usd"}) for _ in range(4)
        ]
        batches.append([str(t.balance_transaction) for t in batch])
        stamps.append(batch[0].created)
        helper(client, "/v1/test_helpers/advance_clock", seconds=3600)

    def listed(created: dict[str, int]) -> set[str]:
        params: Any = {"created": created, "limit": 100}
        page = client.v1.balance_transactions.list(params=params)
        return {t.id for t in page.auto_paging_iter()}

    # then
    assert listed({"gte": stamps[1]}) == set(batches[1] + batches[2])
    assert listed({"gt": stamps[1]}) == set(batches[2])
    assert listed({"lt": stamps[1]}) == set(batches[0])
    assert listed({"lte": stamps[1]}) == set(batches[0] + batches[1])
    assert listed({"gte": stamps[1], "lt": stamps[2]}) == set(batches[1])
    assert listed({"gte": stamps[2] + 1}) == set()
    paged = client.v1.balance_transactions.list(
        params={"created": {"gte": stamps[0], "lte": stamps[1]}, "limit": 3}
    )
    assert [t.id for t in paged.auto_paging_iter()] == list(reversed(batches[0] + batches[1]))


def test_expand_data_source_and_type_filter(client: stripe.StripeClient) -> None:
    # given
    pi = pay(client, amount=2000)
    refund = client.v1.refunds.create(params={"payment_intent": pi.id, "amount": 300})
    topup = client.v1.topups.create(params={"amount": 700, "currency": "usd"})

    # when
    page = client.v1.balance_transactions.list(params={"expand": ["data.source"]})

    # then
    sources = [(t.type, _src(t).object, _src(t).id) for t in page.data]
    assert sources == [
        ("topup", "topup", topup.id),
        ("refund", "refund", refund.id),
        ("charge", "charge", pi.latest_charge),
    ]
    charges = client.v1.balance_transactions.list(
        params={"type": "charge", "expand": ["data.source"]}
    )
    assert [_src(t).payment_intent for t in charges.data] == [pi.id]
    by_source = client.v1.balance_transactions.list(params={"source": refund.id})
    assert [t.amount for t in by_source.data] == [-300]
    with pytest.raises(stripe.InvalidRequestError) as caught:
        client.v1.balance_transactions.list(params={"expand": ["data.currency"]})
    assert caught.value.param == "expand"


def test_events_filters(client: stripe.StripeClient, emulator: EmulatorServer) -> None:
    pay(client)
    customer = client.v1.customers.create()
    exact = client.v1.events.list(params={"type": "customer.created"})
    assert [e.data.object.id for e in exact.data] == [customer.id]
    wildcard = client.v1.events.list(params={"type": "payment_intent.*"})
    assert [e.type for e in wildcard.data] == ["payment_intent.succeeded", "payment_intent.created"]
    several = client.v1.events.list(params={"types": ["charge.succeeded", "customer.created"]})
    assert [e.type for e in several.data] == ["customer.created", "charge.succeeded"]
    event = client.v1.events.retrieve(exact.data[0].id)
    assert event.api_version
    assert event.request is not None
    assert str(event.request.id).startswith("req_")
    assert event.livemode is False
    assert event.pending_webhooks == 0  # no endpoint configured


def test_large_window_listing_stays_consistent(
    client: stripe.StripeClient, emulator: EmulatorServer
) -> None:
    # given: 2,000 top-ups created through the in-process API (fast), listed over HTTP
    for i in range(2000):
        status, _ = emulator.request("POST", "/v1/topups", {"amount": i + 1, "currency": "usd"})
        assert status == 200

    # when
    amounts = [
        t.amount
        for t in client.v1.balance_transactions.list(
            params={"limit": 100, "type": "topup"}
        ).auto_paging_iter()
    ]

    # then
    assert amounts == list(range(2000, 0, -1))


def test_nested_lists_of_refunds_and_reversals(client: stripe.StripeClient) -> None:
    pi = pay(client, amount=5000)
    other = pay(client, amount=5000)
    charge_id = str(pi.latest_charge)
    refunds = [
        client.v1.refunds.create(params={"charge": charge_id, "amount": 100}).id for _ in range(3)
    ]
    client.v1.refunds.create(params={"charge": str(other.latest_charge), "amount": 100})
    first_page: Any = client.deserialize(
        client.raw_request("get", f"/v1/charges/{charge_id}/refunds", limit=2), api_mode="V1"
    )
    assert [r.id for r in first_page.data] == [refunds[2], refunds[1]]
    assert first_page.has_more is True
    second_page: Any = client.deserialize(
        client.raw_request(
            "get", f"/v1/charges/{charge_id}/refunds", limit=2, starting_after=refunds[1]
        ),
        api_mode="V1",
    )
    assert [r.id for r in second_page.data] == [refunds[0]]
    assert second_page.has_more is False

    account = client.v1.accounts.create(params={"type": "express"})
    transfer = client.v1.transfers.create(
        params={"amount": 1000, "currency": "usd", "destination": account.id}
    )
    reversals = [
        client.v1.transfers.reversals.create(transfer.id, params={"amount": 10}).id
        for _ in range(2)
    ]
    listed_reversals = client.v1.transfers.reversals.list(transfer.id)
    assert [r.id for r in listed_reversals.data] == list(reversed(reversals))
    assert client.v1.transfers.reversals.retrieve(transfer.id, reversals[0]).amount == 10


def test_unknown_list_filters_are_refused_not_ignored(client: stripe.StripeClient) -> None:
    params: Any = {"metadata": {"payout_id": "p-1"}}
    with pytest.raises(stripe.InvalidRequestError) as caught:
        client.v1.transfers.list(params=params)
    assert caught.value.code == "parameter_unknown"
    assert caught.value.param == "metadata"
