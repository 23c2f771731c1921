"""PaymentIntents, charges, refunds and disputes through the real stripe client."""

from __future__ import annotations

import pytest
import stripe

from stripe_emulator import EmulatorServer, card_fee

from .conftest import helper, pay


def test_card_fee_is_2_9_percent_plus_30_rounded_half_up() -> None:
    assert card_fee(2000) == 88  # 58 + 30
    assert card_fee(1050) == 60  # 30.45 -> 30, + 30
    assert card_fee(1100) == 62  # 31.9 -> 32, + 30
    assert card_fee(50) == 31  # 1.45 -> 1, + 30
    assert card_fee(1500) == 74  # 43.5 -> 44 (half up), + 30
    assert card_fee(2500) == 103  # 72.5 -> 73 (half up), + 30


def test_confirmed_payment_intent_creates_charge_and_balance_transaction(
    client: stripe.StripeClient, emulator: EmulatorServer
) -> None:
    # given
    customer = client.v1.customers.create(params={"email": "ana@example.com"})

    # when
    pi = client.v1.payment_intents.create(
        params={
            "amount": 2350,
            "currency": "usd",
            "customer": customer.id,
            "payment_method": "pm_card_visa",
            "confirm": True,
            "metadata": {"order_id": "42"},
            "transfer_group": "ORDER_42",
        }
    )

    # then
    assert pi.id.startswith("pi_")
    assert pi.status == "succeeded"
    assert pi.amount_received == 2350
    assert pi.latest_charge is not None
    assert pi.capture_method == "automatic_async"  # the pinned version's default
    # asynchronous capture: the balance transaction is attached just after (test_webhooks
    # shows charge.succeeded without it, then charge.updated)
    assert emulator.settle(5)
    charge = client.v1.charges.retrieve(
        str(pi.latest_charge), params={"expand": ["balance_transaction"]}
    )
    assert charge.id.startswith("ch_")
    assert charge.payment_intent == pi.id
    assert charge.customer == customer.id
    assert charge.transfer_group == "ORDER_42"
    assert charge.metadata.to_dict() == {"order_id": "42"}
    assert (charge.amount, charge.amount_refunded, charge.refunded, charge.disputed) == (
        2350,
        0,
        False,
        False,
    )
    txn = charge.balance_transaction
    assert isinstance(txn, stripe.BalanceTransaction)
    # 2350 * 2.9% = 68.15 -> 68, + 30 = 98
    assert (txn.amount, txn.fee, txn.net) == (2350, 98, 2252)
    assert txn.type == "charge"
    assert txn.reporting_category == "charge"
    assert txn.source == charge.id
    assert txn.status == "available"
    assert [d.to_dict() for d in txn.fee_details] == [
        {
            "amount": 98,
            "application": None,
            "currency": "usd",
            "description": "Stripe processing fees",
            "type": "stripe_fee",
        }
    ]
    balance = client.v1.balance.retrieve()
    assert balance.available[0].amount == 2252
    assert balance.pending[0].amount == 0
    expanded = client.v1.payment_intents.retrieve(pi.id, params={"expand": ["latest_charge"]})
    assert isinstance(expanded.latest_charge, stripe.Charge)
    assert expanded.latest_charge.id == charge.id
    types = [e.type for e in client.v1.events.list(params={"limit": 100}).data]
    assert types == [
        "charge.updated",
        "payment_intent.succeeded",
        "charge.succeeded",
        "payment_intent.created",
        "customer.created",
    ]


def test_payment_intent_created_then_confirmed_separately(client: stripe.StripeClient) -> None:
    # given
    pi = client.v1.payment_intents.create(params={"amount": 1000, "currency": "usd"})
    assert pi.status == "requires_payment_method"

    # when
    confirmed = client.v1.payment_intents.confirm(pi.id, params={"payment_method": "pm_card_visa"})

    # then
    assert confirmed.status == "succeeded"
    charges = client.v1.charges.list(params={"payment_intent": pi.id})
    assert [c.id for c in charges.data] == [confirmed.latest_charge]


def test_declined_card_raises_card_error_and_leaves_no_money_movement(
    client: stripe.StripeClient, emulator: EmulatorServer
) -> None:
    # when
    with pytest.raises(stripe.CardError) as caught:
        pay(client, payment_method="pm_card_chargeDeclined")

    # then
    error = caught.value
    assert error.http_status == 402
    assert error.code == "card_declined"
    assert error.error is not None
    assert error.error.decline_code == "generic_decline"
    assert error.error.payment_intent is not None
    pi_id = error.error.payment_intent.id
    pi = client.v1.payment_intents.retrieve(pi_id)
    assert pi.status == "requires_payment_method"
    assert pi.last_payment_error is not None
    assert pi.last_payment_error.code == "card_declined"
    assert emulator.state.count("balance_transaction") == 0
    assert client.v1.balance.retrieve().available[0].amount == 0
    failed = client.v1.events.list(params={"type": "payment_intent.payment_failed"})
    assert [e.data.object.id for e in failed.data] == [pi_id]
    assert client.v1.charges.retrieve(str(pi.latest_charge)).status == "failed"


def test_confirming_a_succeeded_payment_intent_is_refused(client: stripe.StripeClient) -> None:
    pi = pay(client)
    with pytest.raises(stripe.InvalidRequestError) as caught:
        client.v1.payment_intents.confirm(pi.id)
    assert caught.value.code == "payment_intent_unexpected_state"


def test_cancel_payment_intent(client: stripe.StripeClient) -> None:
    pi = client.v1.payment_intents.create(params={"amount": 1000, "currency": "usd"})
    canceled = client.v1.payment_intents.cancel(
        pi.id, params={"cancellation_reason": "requested_by_customer"}
    )
    assert canceled.status == "canceled"
    assert canceled.cancellation_reason == "requested_by_customer"
    assert canceled.canceled_at is not None
    with pytest.raises(stripe.InvalidRequestError):
        client.v1.payment_intents.cancel(pi.id)


def test_partial_then_full_refund(client: stripe.StripeClient, emulator: EmulatorServer) -> None:
    # given
    pi = pay(client, amount=5000)
    charge_id = str(pi.latest_charge)

    # when
    first = client.v1.refunds.create(
        params={"payment_intent": pi.id, "amount": 1200, "metadata": {"reason_code": "late"}}
    )
    second = client.v1.refunds.create(params={"charge": charge_id})

    # then
    assert first.status == "succeeded"
    assert first.amount == 1200
    assert first.charge == charge_id
    assert first.metadata is not None
    assert first.metadata.to_dict() == {"reason_code": "late"}
    assert second.amount == 3800  # the remaining refundable amount
    assert "refunds" not in client.v1.charges.retrieve(charge_id)  # only when expanded
    charge = client.v1.charges.retrieve(charge_id, params={"expand": ["refunds"]})
    assert (charge.amount_refunded, charge.refunded) == (5000, True)
    assert charge.refunds is not None
    assert [r.id for r in charge.refunds.data] == [second.id, first.id]
    txn = client.v1.balance_transactions.retrieve(str(first.balance_transaction))
    assert (txn.type, txn.reporting_category, txn.amount, txn.fee, txn.net) == (
        "refund",
        "refund",
        -1200,
        0,
        -1200,
    )
    # the 175 fee is kept by Stripe: 5000 - 175 - 5000
    assert client.v1.balance.retrieve().available[0].amount == -card_fee(5000)
    listed = client.v1.refunds.list(params={"charge": charge_id})
    assert [r.id for r in listed.data] == [second.id, first.id]


def test_refund_beyond_refundable_amount_is_refused(
    client: stripe.StripeClient, emulator: EmulatorServer
) -> None:
    # given
    pi = pay(client, amount=3000)
    client.v1.refunds.create(params={"payment_intent": pi.id, "amount": 2000})

    # when
    with pytest.raises(stripe.InvalidRequestError) as caught:
        client.v1.refunds.create(params={"payment_intent": pi.id, "amount": 1001})

    # then
    assert caught.value.http_status == 400
    assert caught.value.code == "amount_too_large"
    assert caught.value.param == "amount"
    assert emulator.state.count("refund") == 1
    client.v1.refunds.create(params={"payment_intent": pi.id, "amount": 1000})
    with pytest.raises(stripe.InvalidRequestError) as again:
        client.v1.refunds.create(params={"payment_intent": pi.id})
    assert again.value.code == "charge_already_refunded"


def test_failing_refund_restores_the_amount(
    client: stripe.StripeClient, emulator: EmulatorServer
) -> None:
    # given
    pi = pay(client, amount=4000)
    refund = client.v1.refunds.create(params={"payment_intent": pi.id, "amount": 1500})
    balance_before = client.v1.balance.retrieve().available[0].amount

    # when
    failed = helper(client, f"/v1/test_helpers/refunds/{refund.id}/fail")

    # then
    assert failed.status == "failed"
    assert failed.failure_reason == "expired_or_canceled_card"
    txn = client.v1.balance_transactions.retrieve(failed.failure_balance_transaction)
    assert (txn.type, txn.reporting_category, txn.amount, txn.net, txn.source) == (
        "refund_failure",
        "refund_failure",
        1500,
        1500,
        refund.id,
    )
    assert client.v1.balance.retrieve().available[0].amount == balance_before + 1500
    charge = client.v1.charges.retrieve(str(pi.latest_charge))
    assert (charge.amount_refunded, charge.refunded) == (0, False)
    types = {e.type for e in client.v1.events.list(params={"limit": 100}).data}
    assert {"refund.failed", "refund.updated", "charge.refund.updated"} <= types


def test_refund_created_with_emulator_fail_metadata_fails_after_creation(
    client: stripe.StripeClient,
) -> None:
    pi = pay(client, amount=4000)
    refund = client.v1.refunds.create(
        params={"payment_intent": pi.id, "metadata": {"emulator_fail": "true"}}
    )
    assert refund.status == "succeeded"  # as on Stripe: it fails asynchronously
    assert client.v1.refunds.retrieve(refund.id).status == "failed"
    event_types = [e.type for e in client.v1.events.list(params={"limit": 4}).data]
    assert event_types[:3] == ["charge.refund.updated", "refund.updated", "refund.failed"]


def test_dispute_won_reinstates_amount_but_keeps_fee(
    client: stripe.StripeClient, emulator: EmulatorServer
) -> None:
    # given
    pi = pay(client, amount=10000)
    charge_id = str(pi.latest_charge)
    net_after_charge = 10000 - card_fee(10000)

    # when
    dispute = helper(client, f"/v1/test_helpers/charges/{charge_id}/dispute", reason="fraudulent")

    # then: the amount and a 1500 fee are withdrawn
    assert dispute.id.startswith("dp_")
    assert dispute.status == "needs_response"
    withdrawal = dispute.balance_transactions[0]
    assert (withdrawal.type, withdrawal.reporting_category) == ("adjustment", "dispute")
    assert (withdrawal.amount, withdrawal.fee, withdrawal.net) == (-10000, 1500, -11500)
    assert withdrawal.fee_details[0].description == "Dispute fee"
    assert client.v1.charges.retrieve(charge_id).disputed is True
    assert client.v1.balance.retrieve().available[0].amount == net_after_charge - 11500
    with pytest.raises(stripe.InvalidRequestError) as caught:
        client.v1.refunds.create(params={"charge": charge_id})
    assert caught.value.code == "charge_disputed"

    # when
    closed = helper(client, f"/v1/test_helpers/disputes/{dispute.id}/close", outcome="won")

    # then
    assert closed.status == "won"
    reinstated = closed.balance_transactions[1]
    assert (reinstated.type, reinstated.reporting_category) == ("adjustment", "dispute_reversal")
    assert (reinstated.amount, reinstated.fee, reinstated.net) == (10000, 0, 10000)
    assert client.v1.balance.retrieve().available[0].amount == net_after_charge - 1500
    types = [e.type for e in client.v1.events.list(params={"type": "charge.dispute.*"}).data]
    assert types == [
        "charge.dispute.closed",
        "charge.dispute.funds_reinstated",
        "charge.dispute.funds_withdrawn",
        "charge.dispute.created",
    ]


def test_dispute_lost_keeps_the_withdrawal(client: stripe.StripeClient) -> None:
    pi = pay(client, amount=3000)
    charge_id = str(pi.latest_charge)
    dispute = helper(client, f"/v1/test_helpers/charges/{charge_id}/dispute", amount=2000)
    assert dispute.amount == 2000

    closed = helper(client, f"/v1/test_helpers/disputes/{dispute.id}/close", outcome="lost")

    assert closed.status == "lost"
    assert len(closed.balance_transactions) == 1
    assert client.v1.balance.retrieve().available[0].amount == 3000 - card_fee(3000) - 3500
    types = [e.type for e in client.v1.events.list(params={"limit": 1}).data]
    assert types == ["charge.dispute.closed"]
    with pytest.raises(stripe.InvalidRequestError):
        helper(client, f"/v1/test_helpers/disputes/{dispute.id}/close", outcome="won")


def test_create_dispute_test_card_opens_a_dispute(client: stripe.StripeClient) -> None:
    pi = pay(client, payment_method="pm_card_createDispute")
    disputes = client.v1.disputes.list(params={"charge": str(pi.latest_charge)})
    assert len(disputes.data) == 1
    assert disputes.data[0].reason == "fraudulent"


def test_global_api_style_works_too(global_stripe: None) -> None:
    pi = stripe.PaymentIntent.create(
        amount=1500, currency="usd", payment_method="pm_card_visa", confirm=True
    )
    charge = stripe.Charge.retrieve(str(pi.latest_charge), expand=["balance_transaction"])
    assert isinstance(charge.balance_transaction, stripe.BalanceTransaction)
    assert charge.balance_transaction.fee == card_fee(1500) == 74
    refund = stripe.Refund.create(payment_intent=pi.id, amount=500)
    assert refund.amount == 500
