"""Connected accounts, transfers and reversals, payouts, top-ups and the balance."""

from __future__ import annotations

import pytest
import stripe

from stripe_emulator import EmulatorServer, card_fee

from .conftest import helper, pay


@pytest.fixture
def restaurant(client: stripe.StripeClient) -> stripe.Account:
    return client.v1.accounts.create(
        params={"type": "express", "country": "US", "email": "resto@example.com"}
    )


def test_account_create_retrieve_list(
    client: stripe.StripeClient, restaurant: stripe.Account
) -> None:
    assert restaurant.id.startswith("acct_")
    assert restaurant.type == "express"
    assert restaurant.charges_enabled is True
    assert restaurant.payouts_enabled is True
    assert client.v1.accounts.retrieve(restaurant.id).email == "resto@example.com"
    assert [a.id for a in client.v1.accounts.list().data] == [restaurant.id]
    event = client.v1.events.list(
        params={"type": "account.updated"}, options={"stripe_account": restaurant.id}
    ).data[0]
    assert event.account == restaurant.id


def test_transfer_and_partial_reversal_move_both_balances(
    client: stripe.StripeClient, emulator: EmulatorServer, restaurant: stripe.Account
) -> None:
    # given: a 3000 charge nets 3000 - 117 = 2883 on the platform
    pi = pay(client, amount=3000, transfer_group="ORDER_7")
    charge_id = str(pi.latest_charge)

    # when
    transfer = client.v1.transfers.create(
        params={
            "amount": 2000,
            "currency": "usd",
            "destination": restaurant.id,
            "transfer_group": "ORDER_7",
            "source_transaction": charge_id,
            "metadata": {"order_id": "7", "payout_id": "pay_1"},
            "description": "restaurant share",
        }
    )

    # then
    assert transfer.id.startswith("tr_")
    assert transfer.destination == restaurant.id
    assert transfer.source_transaction == charge_id
    assert transfer.destination_payment is not None
    assert str(transfer.destination_payment).startswith("py_")
    txn = client.v1.balance_transactions.retrieve(str(transfer.balance_transaction))
    assert (txn.type, txn.reporting_category, txn.amount, txn.net, txn.source) == (
        "transfer",
        "transfer",
        -2000,
        -2000,
        transfer.id,
    )
    connected: stripe.RequestOptions = {"stripe_account": restaurant.id}
    assert client.v1.balance.retrieve(options=connected).available[0].amount == 2000
    incoming = client.v1.balance_transactions.list(options=connected).data
    assert [(t.type, t.amount, t.source) for t in incoming] == [
        ("payment", 2000, transfer.destination_payment)
    ]
    assert emulator.transfer_counts() == {"pay_1": 1}

    # when
    reversal = client.v1.transfers.reversals.create(
        transfer.id, params={"amount": 500, "metadata": {"why": "refund"}}
    )

    # then
    assert reversal.id.startswith("trr_")
    assert reversal.transfer == transfer.id
    rtxn = client.v1.balance_transactions.retrieve(str(reversal.balance_transaction))
    assert (rtxn.type, rtxn.reporting_category, rtxn.amount) == (
        "transfer_refund",
        "transfer_reversal",
        500,
    )
    after = client.v1.transfers.retrieve(transfer.id)
    assert (after.amount_reversed, after.reversed) == (500, False)
    assert [r.id for r in after.reversals.data] == [reversal.id]
    assert client.v1.balance.retrieve(options=connected).available[0].amount == 1500
    assert client.v1.balance.retrieve().available[0].amount == 3000 - card_fee(3000) - 2000 + 500
    assert [e.type for e in client.v1.events.list(params={"limit": 2}).data] == [
        "transfer.reversed",
        "transfer.created",
    ]
    by_group = client.v1.transfers.list(params={"transfer_group": "ORDER_7"})
    assert [t.id for t in by_group.data] == [transfer.id]
    assert client.v1.transfers.list(params={"destination": restaurant.id}).data[0].id == transfer.id
    assert client.v1.transfers.list(params={"transfer_group": "ORDER_8"}).data == []


def test_reversal_needs_the_destination_balance(
    client: stripe.StripeClient, restaurant: stripe.Account
) -> None:
    # given: the restaurant was paid out everything
    pi = pay(client, amount=3000)
    transfer = client.v1.transfers.create(
        params={
            "amount": 2000,
            "currency": "usd",
            "destination": restaurant.id,
            "source_transaction": str(pi.latest_charge),
        }
    )
    client.v1.payouts.create(
        params={"amount": 2000, "currency": "usd"}, options={"stripe_account": restaurant.id}
    )

    # when / then
    with pytest.raises(stripe.InvalidRequestError) as caught:
        client.v1.transfers.reversals.create(transfer.id, params={"amount": 100})
    assert caught.value.code == "balance_insufficient"
    assert client.v1.transfers.retrieve(transfer.id).amount_reversed == 0


def test_transfer_beyond_available_balance_is_refused(
    client: stripe.StripeClient, emulator: EmulatorServer, restaurant: stripe.Account
) -> None:
    # given: 1000 - 59 = 941 available
    pay(client, amount=1000)

    # when
    with pytest.raises(stripe.InvalidRequestError) as caught:
        client.v1.transfers.create(
            params={"amount": 942, "currency": "usd", "destination": restaurant.id}
        )

    # then
    assert caught.value.http_status == 400
    assert caught.value.code == "balance_insufficient"
    assert emulator.state.count("transfer") == 0
    ok = client.v1.transfers.create(
        params={"amount": 941, "currency": "usd", "destination": restaurant.id}
    )
    assert ok.amount == 941


def test_source_transaction_transfers_are_capped_by_the_charge(
    client: stripe.StripeClient, restaurant: stripe.Account
) -> None:
    pi = pay(client, amount=1000)
    charge_id = str(pi.latest_charge)
    params = {"currency": "usd", "destination": restaurant.id, "source_transaction": charge_id}
    # tied to the charge's funds: allowed beyond the 941 net, up to the 1000 charged
    client.v1.transfers.create(params={**params, "amount": 980})  # type: ignore[typeddict-item]
    with pytest.raises(stripe.InvalidRequestError) as caught:
        client.v1.transfers.create(params={**params, "amount": 21})  # type: ignore[typeddict-item]
    assert caught.value.code == "balance_insufficient"


def test_transfer_to_unknown_destination_is_404(client: stripe.StripeClient) -> None:
    pay(client)
    with pytest.raises(stripe.InvalidRequestError) as caught:
        client.v1.transfers.create(
            params={"amount": 100, "currency": "usd", "destination": "acct_missing000000"}
        )
    assert caught.value.http_status == 404
    assert caught.value.code == "resource_missing"
    assert caught.value.param == "destination"


def test_platform_payout_paid_and_failed(
    client: stripe.StripeClient, emulator: EmulatorServer
) -> None:
    # given
    pay(client, amount=10000)  # 9680 available
    # when
    payout = client.v1.payouts.create(params={"amount": 5000, "currency": "usd"})
    # then
    assert payout.id.startswith("po_")
    assert payout.status == "pending"
    txn = client.v1.balance_transactions.retrieve(str(payout.balance_transaction))
    assert (txn.type, txn.reporting_category, txn.amount) == ("payout", "payout", -5000)
    assert client.v1.balance.retrieve().available[0].amount == 4680
    with pytest.raises(stripe.InvalidRequestError) as caught:
        client.v1.payouts.create(params={"amount": 4681, "currency": "usd"})
    assert caught.value.code == "balance_insufficient"

    paid = helper(client, f"/v1/test_helpers/payouts/{payout.id}/paid")
    assert paid.status == "paid"
    failed = helper(
        client, f"/v1/test_helpers/payouts/{payout.id}/failed", failure_code="account_closed"
    )
    assert failed.status == "failed"
    assert failed.failure_code == "account_closed"
    back = client.v1.balance_transactions.retrieve(failed.failure_balance_transaction)
    assert (back.type, back.reporting_category, back.amount) == (
        "payout_failure",
        "payout_reversal",
        5000,
    )
    assert client.v1.balance.retrieve().available[0].amount == 9680
    assert [e.type for e in client.v1.events.list(params={"type": "payout.*"}).data] == [
        "payout.failed",
        "payout.paid",
        "payout.created",
    ]


def test_connected_account_payout_events_carry_the_account(
    client: stripe.StripeClient, restaurant: stripe.Account
) -> None:
    # given
    pay(client, amount=5000)
    client.v1.transfers.create(
        params={"amount": 3000, "currency": "usd", "destination": restaurant.id}
    )
    connected: stripe.RequestOptions = {"stripe_account": restaurant.id}

    # when
    payout = client.v1.payouts.create(params={"amount": 2500, "currency": "usd"}, options=connected)
    paid = helper(
        client, f"/v1/test_helpers/payouts/{payout.id}/paid", stripe_account=restaurant.id
    )

    # then
    assert paid.status == "paid"
    assert client.v1.balance.retrieve(options=connected).available[0].amount == 500
    events = client.v1.events.list(params={"type": "payout.paid"}, options=connected).data
    assert [(e.account, e.data.object.id) for e in events] == [(restaurant.id, payout.id)]
    # platform-scoped calls do not see the connected account's payout
    assert client.v1.payouts.list().data == []
    with pytest.raises(stripe.InvalidRequestError):
        client.v1.payouts.retrieve(payout.id)


def test_automatic_payout_lists_its_balance_transactions(client: stripe.StripeClient) -> None:
    # given
    first = pay(client, amount=2000)
    pay(client, amount=3000)
    client.v1.refunds.create(params={"payment_intent": first.id, "amount": 500})

    # when
    payout = helper(client, "/v1/test_helpers/payouts/automatic", currency="usd")

    # then
    assert payout.automatic is True
    expected = 2000 - card_fee(2000) + 3000 - card_fee(3000) - 500
    assert payout.amount == expected
    txns = list(
        client.v1.balance_transactions.list(
            params={"payout": payout.id, "limit": 2}
        ).auto_paging_iter()
    )
    assert sorted(t.type for t in txns) == ["charge", "charge", "payout", "refund"]
    assert sum(t.net for t in txns if t.type != "payout") == payout.amount
    paid = helper(client, f"/v1/test_helpers/payouts/{payout.id}/paid")
    assert paid.reconciliation_status == "completed"
    client.v1.topups.create(params={"amount": 1000, "currency": "usd"})
    manual = client.v1.payouts.create(params={"amount": 100, "currency": "usd"})
    with pytest.raises(stripe.InvalidRequestError):  # Stripe cannot attribute manual payouts
        client.v1.balance_transactions.list(params={"payout": manual.id})


def test_topup_adds_available_funds(client: stripe.StripeClient) -> None:
    topup = client.v1.topups.create(
        params={"amount": 50000, "currency": "usd", "description": "float"}
    )
    assert topup.id.startswith("tu_")
    assert topup.status == "succeeded"
    txn = client.v1.balance_transactions.retrieve(str(topup.balance_transaction))
    assert (txn.type, txn.reporting_category, txn.amount, txn.fee) == ("topup", "topup", 50000, 0)
    assert client.v1.balance.retrieve().available[0].amount == 50000


def test_available_delay_keeps_charges_pending_until_the_clock_moves() -> None:
    from .conftest import make_client

    server = EmulatorServer(port=0, available_delay_seconds=86400)
    server.start()
    try:
        client = make_client(server)
        account = client.v1.accounts.create(params={"type": "express"})
        pi = pay(client, amount=1000)
        balance = client.v1.balance.retrieve()
        assert (balance.available[0].amount, balance.pending[0].amount) == (0, 941)
        with pytest.raises(stripe.InvalidRequestError):
            client.v1.transfers.create(
                params={"amount": 100, "currency": "usd", "destination": account.id}
            )
        # a source_transaction transfer succeeds at once and settles with the charge
        client.v1.transfers.create(
            params={
                "amount": 100,
                "currency": "usd",
                "destination": account.id,
                "source_transaction": str(pi.latest_charge),
            }
        )

        helper(client, "/v1/test_helpers/advance_clock", seconds=86400)

        balance = client.v1.balance.retrieve()
        assert (balance.available[0].amount, balance.pending[0].amount) == (841, 0)
        assert client.v1.events.list(params={"type": "balance.available"}).data
    finally:
        server.stop()
