"""Customers, PaymentIntents, charges, refunds and disputes.

Test payment methods (as on Stripe): `pm_card_visa`, `pm_card_mastercard`, `pm_card_amex`
succeed; `pm_card_chargeDeclined*` decline with a 402 card_error; `pm_card_createDispute`
succeeds and is disputed right away; refunds of a `pm_card_refundFail` charge succeed and
then fail. A refund created with `metadata[emulator_fail]=true` fails the same way.
"""

from __future__ import annotations

from typing import Any

from .. import forms
from ..errors import ApiError, bad_param, invalid, no_such
from ..forms import Params
from ..state import DISPUTE_FEE, Ctx, EmulatorState, Rendered, card_fee, new_id
from ..store import Obj

SUCCESS_METHODS: dict[str, tuple[str, str]] = {
    "pm_card_visa": ("visa", "4242"),
    "pm_card_visa_debit": ("visa", "5556"),
    "pm_card_us": ("visa", "4242"),
    "pm_card_mastercard": ("mastercard", "4444"),
    "pm_card_amex": ("amex", "8431"),
    "pm_card_createDispute": ("visa", "0259"),
    "pm_card_refundFail": ("visa", "5126"),
}
# payment method -> (code, decline_code, message)
DECLINES: dict[str, tuple[str, str, str]] = {
    "pm_card_chargeDeclined": ("card_declined", "generic_decline", "Your card was declined."),
    "pm_card_visa_chargeDeclined": ("card_declined", "generic_decline", "Your card was declined."),
    "pm_card_chargeDeclinedInsufficientFunds": (
        "card_declined",
        "insufficient_funds",
        "Your card has insufficient funds.",
    ),
    "pm_card_chargeDeclinedFraudulent": ("card_declined", "fraudulent", "Your card was declined."),
    "pm_card_chargeDeclinedExpiredCard": ("expired_card", "expired_card", "Your card has expired."),
    "pm_card_chargeDeclinedIncorrectCvc": (
        "incorrect_cvc",
        "incorrect_cvc",
        "Your card's security code is incorrect.",
    ),
    "pm_card_chargeDeclinedProcessingError": (
        "processing_error",
        "processing_error",
        "An error occurred while processing your card. Try again in a little bit.",
    ),
}
OPEN_DISPUTE_STATUSES = (
    "warning_needs_response",
    "warning_under_review",
    "needs_response",
    "under_review",
)
MIN_CHARGE_AMOUNT = 50


# -- customers -------------------------------------------------------------------------------

CUSTOMER_PARAMS = [
    "email",
    "name",
    "description",
    "metadata",
    "phone",
    "payment_method",
    "address",
    "shipping",
    "invoice_settings",
    "preferred_locales",
    "tax_exempt",
    "test_clock",
    "source",
    "balance",
]


def customer_create(st: EmulatorState, ctx: Ctx, p: Params) -> Obj:
    forms.check_allowed(p, CUSTOMER_PARAMS)
    customer: Obj = {
        "id": new_id("cus"),
        "object": "customer",
        "address": None,
        "balance": forms.get_int(p, "balance") or 0,
        "created": st.now(),
        "currency": None,
        "default_source": None,
        "delinquent": False,
        "description": forms.get_str(p, "description"),
        "discount": None,
        "email": forms.get_str(p, "email"),
        "invoice_prefix": new_id("x")[2:10].upper(),
        "invoice_settings": {
            "custom_fields": None,
            "default_payment_method": None,
            "footer": None,
            "rendering_options": None,
        },
        "livemode": False,
        "metadata": forms.get_metadata(p),
        "name": forms.get_str(p, "name"),
        "phone": forms.get_str(p, "phone"),
        "preferred_locales": [],
        "shipping": None,
        "tax_exempt": "none",
        "test_clock": None,
    }
    st.insert("customer", ctx.account, customer)
    st.emit(ctx, ctx.account, "customer.created", customer)
    return customer


def customer_retrieve(st: EmulatorState, ctx: Ctx, p: Params, customer_id: str) -> Obj:
    return st.get_owned("customer", customer_id, ctx.account)


def customer_update(st: EmulatorState, ctx: Ctx, p: Params, customer_id: str) -> Obj:
    forms.check_allowed(p, CUSTOMER_PARAMS)
    customer = st.get_owned("customer", customer_id, ctx.account)
    previous = _apply_simple_updates(customer, p, ("email", "name", "description", "phone"))
    _update_metadata(customer, p, previous)
    st.store.touch(customer_id)
    st.emit(ctx, ctx.account, "customer.updated", customer, previous)
    return customer


def customer_list(st: EmulatorState, ctx: Ctx, p: Params) -> Obj:
    return st.list_page("customer", ctx.account, p, "/v1/customers", filters=("email",))


# -- payment intents -------------------------------------------------------------------------

PI_CREATE_PARAMS = [
    "amount",
    "currency",
    "customer",
    "metadata",
    "transfer_group",
    "payment_method",
    "confirm",
    "capture_method",
    "description",
    "receipt_email",
    "statement_descriptor",
    "statement_descriptor_suffix",
    "payment_method_types",
    "automatic_payment_methods",
    "off_session",
    "return_url",
    "setup_future_usage",
    "confirmation_method",
    "error_on_requires_action",
    "use_stripe_sdk",
    "shipping",
    "payment_method_options",
    "on_behalf_of",
    "mandate_data",
]
PI_CONFIRM_PARAMS = [
    "payment_method",
    "return_url",
    "off_session",
    "receipt_email",
    "setup_future_usage",
    "shipping",
    "payment_method_options",
    "error_on_requires_action",
    "use_stripe_sdk",
    "mandate_data",
    "capture_method",
]
PI_UPDATE_PARAMS = [
    "amount",
    "currency",
    "customer",
    "metadata",
    "transfer_group",
    "payment_method",
    "description",
    "receipt_email",
    "statement_descriptor",
    "statement_descriptor_suffix",
    "shipping",
    "setup_future_usage",
    "payment_method_types",
]


def _check_payment_method(pm: str) -> None:
    if pm not in SUCCESS_METHODS and pm not in DECLINES:
        raise no_such("PaymentMethod", pm, param="payment_method")


def payment_intent_create(st: EmulatorState, ctx: Ctx, p: Params) -> Obj:
    forms.check_allowed(p, PI_CREATE_PARAMS)
    amount = forms.req_int(p, "amount", minimum=1)
    currency = forms.get_currency(p)
    if amount < MIN_CHARGE_AMOUNT:
        raise bad_param(
            f"Amount must be at least {MIN_CHARGE_AMOUNT} cents",
            param="amount",
            code="amount_too_small",
        )
    # The pinned version's default is automatic_async (since 2024-04-10).
    capture_method = forms.get_choice(
        p, "capture_method", ("automatic", "automatic_async", "manual"), default="automatic_async"
    )
    if capture_method == "manual":
        raise bad_param(
            "The Stripe emulator supports capture_method=automatic only.", param="capture_method"
        )
    customer_id = forms.get_str(p, "customer")
    if customer_id is not None:
        st.get_owned("customer", customer_id, ctx.account, param="customer")
    pm = forms.get_str(p, "payment_method")
    if pm is not None:
        _check_payment_method(pm)
    confirm = forms.get_bool(p, "confirm")
    if confirm and pm is None:
        raise bad_param(
            "You must provide a payment_method to confirm this PaymentIntent.",
            param="payment_method",
            code="parameter_missing",
        )
    pi_id = new_id("pi")
    pi: Obj = {
        "id": pi_id,
        "object": "payment_intent",
        "amount": amount,
        "amount_capturable": 0,
        "amount_details": {"tip": {}},
        "amount_received": 0,
        "application": None,
        "application_fee_amount": None,
        "automatic_payment_methods": None,
        "canceled_at": None,
        "cancellation_reason": None,
        "capture_method": capture_method,
        "client_secret": f"{pi_id}_secret_{new_id('s')[2:]}",
        "confirmation_method": "automatic",
        "created": st.now(),
        "currency": currency,
        "customer": customer_id,
        "description": forms.get_str(p, "description"),
        "last_payment_error": None,
        "latest_charge": None,
        "livemode": False,
        "metadata": forms.get_metadata(p),
        "next_action": None,
        "on_behalf_of": None,
        "payment_method": pm,
        "payment_method_configuration_details": None,
        "payment_method_options": {},
        "payment_method_types": ["card"],
        "processing": None,
        "receipt_email": forms.get_str(p, "receipt_email"),
        "review": None,
        "setup_future_usage": None,
        "shipping": None,
        "statement_descriptor": forms.get_str(p, "statement_descriptor"),
        "statement_descriptor_suffix": forms.get_str(p, "statement_descriptor_suffix"),
        "status": "requires_confirmation" if pm else "requires_payment_method",
        "transfer_data": None,
        "transfer_group": forms.get_str(p, "transfer_group"),
    }
    st.insert("payment_intent", ctx.account, pi)
    st.emit(ctx, ctx.account, "payment_intent.created", pi)
    if confirm:
        assert pm is not None
        _confirm(st, ctx, pi, pm)
    return pi


def payment_intent_retrieve(st: EmulatorState, ctx: Ctx, p: Params, pi_id: str) -> Obj:
    return st.get_owned("payment_intent", pi_id, ctx.account)


def payment_intent_update(st: EmulatorState, ctx: Ctx, p: Params, pi_id: str) -> Obj:
    forms.check_allowed(p, PI_UPDATE_PARAMS)
    pi = st.get_owned("payment_intent", pi_id, ctx.account)
    money_fields = {"amount", "currency", "payment_method", "customer"} & set(p)
    if money_fields and pi["status"] in ("succeeded", "canceled", "processing"):
        raise invalid(
            f"This PaymentIntent's {sorted(money_fields)[0]} could not be updated because it has a"
            f" status of {pi['status']}.",
            code="payment_intent_unexpected_state",
            param=sorted(money_fields)[0],
        )
    previous = _apply_simple_updates(
        pi,
        p,
        ("description", "receipt_email", "statement_descriptor", "statement_descriptor_suffix"),
    )
    if "transfer_group" in p:
        previous["transfer_group"] = pi["transfer_group"]
        pi["transfer_group"] = forms.get_str(p, "transfer_group")
    if "amount" in p:
        previous["amount"] = pi["amount"]
        pi["amount"] = forms.req_int(p, "amount", minimum=MIN_CHARGE_AMOUNT)
    if "currency" in p:
        previous["currency"] = pi["currency"]
        pi["currency"] = forms.get_currency(p)
    if "customer" in p:
        customer_id = forms.get_str(p, "customer")
        if customer_id is not None:
            st.get_owned("customer", customer_id, ctx.account, param="customer")
        previous["customer"] = pi["customer"]
        pi["customer"] = customer_id
    if "payment_method" in p:
        pm = forms.get_str(p, "payment_method")
        if pm is not None:
            _check_payment_method(pm)
        previous["payment_method"] = pi["payment_method"]
        pi["payment_method"] = pm
        pi["status"] = "requires_confirmation" if pm else "requires_payment_method"
    _update_metadata(pi, p, previous)
    st.store.touch(pi_id)
    st.emit(ctx, ctx.account, "payment_intent.updated", pi, previous)
    return pi


def payment_intent_confirm(st: EmulatorState, ctx: Ctx, p: Params, pi_id: str) -> Obj:
    forms.check_allowed(p, PI_CONFIRM_PARAMS)
    pi = st.get_owned("payment_intent", pi_id, ctx.account)
    if pi["status"] not in ("requires_payment_method", "requires_confirmation", "requires_action"):
        raise invalid(
            f"This PaymentIntent's status is {pi['status']}, but it must be one of"
            " requires_payment_method, requires_confirmation or requires_action to be confirmed.",
            code="payment_intent_unexpected_state",
        )
    pm = forms.get_str(p, "payment_method") or pi["payment_method"]
    if pm is None:
        raise bad_param(
            "You cannot confirm this PaymentIntent because it's missing a payment method.",
            param="payment_method",
            code="payment_intent_unexpected_state",
        )
    _check_payment_method(pm)
    _confirm(st, ctx, pi, pm)
    return pi


def payment_intent_cancel(st: EmulatorState, ctx: Ctx, p: Params, pi_id: str) -> Obj:
    forms.check_allowed(p, ("cancellation_reason",))
    pi = st.get_owned("payment_intent", pi_id, ctx.account)
    if pi["status"] not in (
        "requires_payment_method",
        "requires_confirmation",
        "requires_action",
        "requires_capture",
    ):
        raise invalid(
            f"You cannot cancel this PaymentIntent because it has a status of {pi['status']}."
            " Only a PaymentIntent with one of the following statuses may be canceled:"
            " requires_payment_method, requires_capture, requires_confirmation, requires_action,"
            " processing.",
            code="payment_intent_unexpected_state",
        )
    reason = forms.get_choice(
        p,
        "cancellation_reason",
        ("duplicate", "fraudulent", "requested_by_customer", "abandoned"),
    )
    previous = {"status": pi["status"], "canceled_at": None, "cancellation_reason": None}
    pi["status"] = "canceled"
    pi["canceled_at"] = st.now()
    pi["cancellation_reason"] = reason
    st.store.touch(pi_id)
    st.emit(ctx, ctx.account, "payment_intent.canceled", pi, previous)
    return pi


def payment_intent_list(st: EmulatorState, ctx: Ctx, p: Params) -> Obj:
    return st.list_page(
        "payment_intent", ctx.account, p, "/v1/payment_intents", filters=("customer",)
    )


def _card_details(pm: str) -> Obj:
    brand, last4 = SUCCESS_METHODS.get(pm, ("visa", "0002"))
    return {
        "card": {
            "amount_authorized": None,
            "brand": brand,
            "checks": {
                "address_line1_check": None,
                "address_postal_code_check": None,
                "cvc_check": "pass",
            },
            "country": "US",
            "exp_month": 12,
            "exp_year": 2034,
            "fingerprint": "EmUlAtOrFiNgErPr",
            "funding": "credit",
            "last4": last4,
            "network": brand,
            "three_d_secure": None,
            "wallet": None,
        },
        "type": "card",
    }


def _new_charge(st: EmulatorState, pi: Obj, pm: str, charge_id: str, *, succeeded: bool) -> Obj:
    decline = DECLINES.get(pm)
    return {
        "id": charge_id,
        "object": "charge",
        "amount": pi["amount"],
        "amount_captured": pi["amount"] if succeeded else 0,
        "amount_refunded": 0,
        "application": None,
        "application_fee": None,
        "application_fee_amount": None,
        "balance_transaction": None,
        "billing_details": {
            "address": {
                "city": None,
                "country": None,
                "line1": None,
                "line2": None,
                "postal_code": None,
                "state": None,
            },
            "email": None,
            "name": None,
            "phone": None,
        },
        "calculated_statement_descriptor": "STRIPE EMULATOR",
        "captured": succeeded,
        "created": st.now(),
        "currency": pi["currency"],
        "customer": pi["customer"],
        "description": pi["description"],
        "disputed": False,
        "failure_balance_transaction": None,
        "failure_code": None if succeeded or decline is None else decline[0],
        "failure_message": None if succeeded or decline is None else decline[2],
        "fraud_details": {},
        "livemode": False,
        "metadata": dict(pi["metadata"]),
        "on_behalf_of": None,
        "outcome": {
            "network_status": "approved_by_network" if succeeded else "declined_by_network",
            "reason": None if succeeded or decline is None else decline[1],
            "risk_level": "normal",
            "risk_score": 20,
            "seller_message": "Payment complete."
            if succeeded
            else "The bank did not return any further details with this decline.",
            "type": "authorized" if succeeded else "issuer_declined",
        },
        "paid": succeeded,
        "payment_intent": pi["id"],
        "payment_method": pm,
        "payment_method_details": _card_details(pm),
        "receipt_email": pi["receipt_email"],
        "receipt_number": None,
        "receipt_url": None,
        "refunded": False,
        "review": None,
        "shipping": None,
        "source_transfer": None,
        "statement_descriptor": pi["statement_descriptor"],
        "statement_descriptor_suffix": pi["statement_descriptor_suffix"],
        "status": "succeeded" if succeeded else "failed",
        "transfer_data": None,
        "transfer_group": pi["transfer_group"],
        "_pm": pm,
    }


def _confirm(st: EmulatorState, ctx: Ctx, pi: Obj, pm: str) -> None:
    account = ctx.account
    charge_id = new_id("ch")
    decline = DECLINES.get(pm)
    if decline is not None:
        code, decline_code, message = decline
        charge = _new_charge(st, pi, pm, charge_id, succeeded=False)
        st.insert("charge", account, charge)
        previous = {"status": pi["status"], "last_payment_error": pi["last_payment_error"]}
        pi["status"] = "requires_payment_method"
        pi["payment_method"] = None
        pi["latest_charge"] = charge_id
        pi["last_payment_error"] = {
            "charge": charge_id,
            "code": code,
            "decline_code": decline_code,
            "doc_url": f"https://stripe.com/docs/error-codes/{code.replace('_', '-')}",
            "message": message,
            "payment_method": {"id": pm, "object": "payment_method", "type": "card"},
            "type": "card_error",
        }
        st.store.touch(pi["id"])
        st.emit(ctx, account, "charge.failed", charge)
        st.emit(ctx, account, "payment_intent.payment_failed", pi, previous)
        raise ApiError(
            402,
            "card_error",
            message,
            code=code,
            extra={
                "charge": charge_id,
                "decline_code": decline_code,
                "payment_intent": st.render(pi),
                "payment_method": {"id": pm, "object": "payment_method", "type": "card"},
            },
        )

    amount = pi["amount"]
    charge = _new_charge(st, pi, pm, charge_id, succeeded=True)
    st.insert("charge", account, charge)
    if pi["capture_method"] == "automatic":
        # Synchronous capture: the balance transaction is in the answer and the events.
        _attach_balance_transaction(st, account, charge, emit_update=False)
    else:
        # Asynchronous capture: `balance_transaction` is null in the answer and in
        # charge.succeeded / payment_intent.succeeded; Stripe attaches it a little later and
        # says so with charge.updated.
        st.schedule(
            st.capture_delay_seconds,
            lambda: _attach_balance_transaction(st, account, charge, emit_update=True),
        )
    previous = {"status": pi["status"], "amount_received": 0, "latest_charge": pi["latest_charge"]}
    pi["status"] = "succeeded"
    pi["payment_method"] = pm
    pi["amount_received"] = amount
    pi["latest_charge"] = charge_id
    pi["last_payment_error"] = None
    st.store.touch(pi["id"])
    st.emit(ctx, account, "charge.succeeded", charge)
    st.emit(ctx, account, "payment_intent.succeeded", pi, previous)
    if pm == "pm_card_createDispute":
        open_dispute(st, None, charge, amount, "fraudulent")


def _attach_balance_transaction(
    st: EmulatorState, account: str, charge: Obj, *, emit_update: bool
) -> None:
    """The charge's balance transaction (amount, Stripe's fee, pending until available_on)."""
    if charge.get("balance_transaction"):
        return
    amount = charge["amount"]
    fee = card_fee(amount)
    txn = st.add_txn(
        account,
        amount=amount,
        currency=charge["currency"],
        type_="charge",
        category="charge",
        source=charge["id"],
        fee=fee,
        fee_details=[
            {
                "amount": fee,
                "application": None,
                "currency": charge["currency"],
                "description": "Stripe processing fees",
                "type": "stripe_fee",
            }
        ],
        description=charge["description"],
        available_on=st.funds_available_on(),
    )
    charge["balance_transaction"] = txn["id"]
    st.store.touch(charge["id"])
    if emit_update:
        st.emit(None, account, "charge.updated", charge, {"balance_transaction": None})


# -- charges ---------------------------------------------------------------------------------


def charge_retrieve(st: EmulatorState, ctx: Ctx, p: Params, charge_id: str) -> Obj:
    return st.get_owned("charge", charge_id, ctx.account)


def charge_update(st: EmulatorState, ctx: Ctx, p: Params, charge_id: str) -> Obj:
    forms.check_allowed(
        p,
        ("description", "metadata", "receipt_email", "shipping", "fraud_details", "transfer_group"),
    )
    charge = st.get_owned("charge", charge_id, ctx.account)
    previous = _apply_simple_updates(charge, p, ("description", "receipt_email", "transfer_group"))
    _update_metadata(charge, p, previous)
    st.store.touch(charge_id)
    st.emit(ctx, ctx.account, "charge.updated", charge, previous)
    return charge


def charge_list(st: EmulatorState, ctx: Ctx, p: Params) -> Obj:
    return st.list_page(
        "charge",
        ctx.account,
        p,
        "/v1/charges",
        filters=("payment_intent", "customer", "transfer_group"),
    )


# -- refunds ---------------------------------------------------------------------------------

REFUND_PARAMS = [
    "charge",
    "payment_intent",
    "amount",
    "metadata",
    "reason",
    "refund_application_fee",
    "reverse_transfer",
    "instructions_email",
    "origin",
    "currency",
    "customer",
]


def refund_create(st: EmulatorState, ctx: Ctx, p: Params) -> Obj:
    forms.check_allowed(p, REFUND_PARAMS)
    account = ctx.account
    charge_id = forms.get_str(p, "charge")
    pi_id = forms.get_str(p, "payment_intent")
    amount = forms.get_int(p, "amount", minimum=1)
    reason = forms.get_choice(p, "reason", ("duplicate", "fraudulent", "requested_by_customer"))
    metadata = forms.get_metadata(p)
    if charge_id is None and pi_id is None:
        raise bad_param(
            "One of the following params should be provided for this request: charge or"
            " payment_intent.",
            param="charge",
            code="parameter_missing",
        )
    if charge_id is not None:
        charge = st.get_owned("charge", charge_id, account, param="charge")
        if pi_id is not None and charge["payment_intent"] != pi_id:
            raise bad_param(
                "The charge does not belong to this PaymentIntent.", param="payment_intent"
            )
    else:
        pi = st.get_owned("payment_intent", pi_id, account, param="payment_intent")
        if pi["status"] != "succeeded" or pi["latest_charge"] is None:
            raise invalid(
                f"This PaymentIntent ({pi_id}) does not have a successful charge to refund.",
                code="charge_not_refundable",
                param="payment_intent",
            )
        charge = st.store.objects[pi["latest_charge"]]
    if charge["status"] != "succeeded":
        raise invalid(
            f"Charge {charge['id']} has not succeeded and cannot be refunded.",
            code="charge_not_refundable",
            param="charge",
        )
    dispute_status = charge.get("_dispute_status")
    if charge["disputed"] and dispute_status != "won":
        raise invalid(
            f"Charge {charge['id']} has been charged back; cannot issue a refund.",
            code="charge_disputed",
            param="charge",
        )
    remaining = charge["amount"] - charge["amount_refunded"]
    if remaining <= 0:
        raise invalid(
            f"Charge {charge['id']} has already been refunded.",
            code="charge_already_refunded",
            param="charge",
        )
    if amount is None:
        amount = remaining
    if amount > remaining:
        raise invalid(
            f"Refund amount ({_money(amount, charge['currency'])}) is greater than unrefunded"
            f" amount on charge ({_money(remaining, charge['currency'])})",
            code="amount_too_large",
            param="amount",
        )
    refund_id = new_id("re")
    txn = st.add_txn(
        account,
        amount=-amount,
        currency=charge["currency"],
        type_="refund",
        category="refund",
        source=refund_id,
        description="REFUND FOR CHARGE"
        + (f" ({charge['description']})" if charge["description"] else ""),
    )
    refund: Obj = {
        "id": refund_id,
        "object": "refund",
        "amount": amount,
        "balance_transaction": txn["id"],
        "charge": charge["id"],
        "created": st.now(),
        "currency": charge["currency"],
        "destination_details": {
            "card": {
                "reference": None,
                "reference_status": "pending",
                "reference_type": "acquirer_reference_number",
                "type": "refund",
            },
            "type": "card",
        },
        "failure_balance_transaction": None,
        "failure_reason": None,
        "metadata": metadata,
        "payment_intent": charge["payment_intent"],
        "reason": reason,
        "receipt_number": None,
        "source_transfer_reversal": None,
        "status": "succeeded",
        "transfer_reversal": None,
    }
    st.insert("refund", account, refund)
    previous = {"amount_refunded": charge["amount_refunded"], "refunded": charge["refunded"]}
    charge["amount_refunded"] += amount
    charge["refunded"] = charge["amount_refunded"] >= charge["amount"]
    st.store.touch(charge["id"])
    st.emit(ctx, account, "refund.created", refund)
    st.emit(ctx, account, "charge.refunded", charge, previous)
    response = Rendered(st.render(refund))
    if metadata.get("emulator_fail") == "true" or charge.get("_pm") == "pm_card_refundFail":
        # Stripe's refund-fail test card: the refund succeeds, then fails asynchronously.
        fail_refund(st, None, refund)
    return response


def fail_refund(st: EmulatorState, ctx: Ctx | None, refund: Obj) -> Obj:
    if refund["status"] not in ("succeeded", "pending"):
        raise invalid(
            f"Refund {refund['id']} has status {refund['status']} and cannot fail.",
            code="refund_unexpected_state",
        )
    account = st.store.owner[refund["id"]]
    charge = st.store.objects[refund["charge"]]
    txn = st.add_txn(
        account,
        amount=refund["amount"],
        currency=refund["currency"],
        type_="refund_failure",
        category="refund_failure",
        source=refund["id"],
        description="REFUND FAILURE",
    )
    previous = {
        "status": refund["status"],
        "failure_reason": None,
        "failure_balance_transaction": None,
    }
    refund["status"] = "failed"
    refund["failure_reason"] = "expired_or_canceled_card"
    refund["failure_balance_transaction"] = txn["id"]
    st.store.touch(refund["id"])
    charge["amount_refunded"] -= refund["amount"]
    charge["refunded"] = False
    st.store.touch(charge["id"])
    st.emit(ctx, account, "refund.failed", refund, previous)
    st.emit(ctx, account, "refund.updated", refund, previous)
    st.emit(ctx, account, "charge.refund.updated", refund, previous)
    return refund


def refund_fail_helper(st: EmulatorState, ctx: Ctx, p: Params, refund_id: str) -> Obj:
    forms.check_allowed(p, ())
    refund = st.get_owned("refund", refund_id, ctx.account)
    return fail_refund(st, ctx, refund)


def refund_retrieve(st: EmulatorState, ctx: Ctx, p: Params, refund_id: str) -> Obj:
    return st.get_owned("refund", refund_id, ctx.account)


def refund_update(st: EmulatorState, ctx: Ctx, p: Params, refund_id: str) -> Obj:
    forms.check_allowed(p, ("metadata",))
    refund = st.get_owned("refund", refund_id, ctx.account)
    previous: Obj = {}
    _update_metadata(refund, p, previous)
    st.store.touch(refund_id)
    st.emit(ctx, ctx.account, "refund.updated", refund, previous)
    return refund


def refund_list(st: EmulatorState, ctx: Ctx, p: Params) -> Obj:
    return st.list_page(
        "refund", ctx.account, p, "/v1/refunds", filters=("charge", "payment_intent")
    )


def charge_refunds_list(st: EmulatorState, ctx: Ctx, p: Params, charge_id: str) -> Obj:
    st.get_owned("charge", charge_id, ctx.account)
    return st.list_page(
        "refund",
        ctx.account,
        {**p, "charge": charge_id},
        f"/v1/charges/{charge_id}/refunds",
        filters=("charge",),
    )


# -- disputes --------------------------------------------------------------------------------


def open_dispute(st: EmulatorState, ctx: Ctx | None, charge: Obj, amount: int, reason: str) -> Obj:
    account = st.store.owner[charge["id"]]
    dispute_id = new_id("dp")
    now = st.now()
    dispute: Obj = {
        "id": dispute_id,
        "object": "dispute",
        "amount": amount,
        "charge": charge["id"],
        "created": now,
        "currency": charge["currency"],
        "evidence": {
            "customer_communication": None,
            "customer_email_address": None,
            "customer_name": None,
            "product_description": None,
            "receipt": None,
            "refund_policy": None,
            "service_date": None,
            "service_documentation": None,
            "uncategorized_text": None,
        },
        "evidence_details": {
            "due_by": now + 7 * 86400,
            "has_evidence": False,
            "past_due": False,
            "submission_count": 0,
        },
        "is_charge_refundable": False,
        "livemode": False,
        "metadata": {},
        "payment_intent": charge["payment_intent"],
        "payment_method_details": {
            "card": {"brand": "visa", "case_type": "chargeback", "network_reason_code": "10.4"},
            "type": "card",
        },
        "reason": reason,
        "status": "needs_response",
        "_balance_transactions": [],
    }
    st.insert("dispute", account, dispute)
    charge["disputed"] = True
    charge["_dispute_status"] = "needs_response"
    st.store.touch(charge["id"])
    st.emit(ctx, account, "charge.dispute.created", dispute)
    txn = st.add_txn(
        account,
        amount=-amount,
        currency=charge["currency"],
        type_="adjustment",
        category="dispute",
        source=dispute_id,
        fee=DISPUTE_FEE,
        fee_details=[
            {
                "amount": DISPUTE_FEE,
                "application": None,
                "currency": charge["currency"],
                "description": "Dispute fee",
                "type": "stripe_fee",
            }
        ],
        description=f"Chargeback withdrawal for {charge['id']}",
    )
    dispute["_balance_transactions"] = [txn["id"]]
    st.store.touch(dispute_id)
    st.emit(ctx, account, "charge.dispute.funds_withdrawn", dispute)
    return dispute


def dispute_create_helper(st: EmulatorState, ctx: Ctx, p: Params, charge_id: str) -> Obj:
    forms.check_allowed(p, ("amount", "reason"))
    charge = st.get_owned("charge", charge_id, ctx.account)
    if charge["status"] != "succeeded":
        raise invalid(
            f"Charge {charge_id} has not succeeded and cannot be disputed.", param="charge"
        )
    if charge["disputed"]:
        raise invalid(
            f"Charge {charge_id} is already disputed.", code="charge_disputed", param="charge"
        )
    amount = forms.get_int(p, "amount", minimum=1)
    if amount is None:
        amount = charge["amount"]
    if amount > charge["amount"]:
        raise bad_param("The dispute amount cannot exceed the charge amount.", param="amount")
    reason = forms.get_choice(
        p,
        "reason",
        (
            "fraudulent",
            "product_not_received",
            "product_unacceptable",
            "duplicate",
            "subscription_canceled",
            "credit_not_processed",
            "general",
            "unrecognized",
        ),
        default="fraudulent",
    )
    assert reason is not None
    return open_dispute(st, ctx, charge, amount, reason)


def _close_dispute(st: EmulatorState, ctx: Ctx | None, dispute: Obj, outcome: str) -> Obj:
    if dispute["status"] not in OPEN_DISPUTE_STATUSES:
        raise invalid(
            f"This dispute is already closed (status {dispute['status']}).",
        )
    account = st.store.owner[dispute["id"]]
    charge = st.store.objects[dispute["charge"]]
    previous = {"status": dispute["status"]}
    if outcome == "won":
        txn = st.add_txn(
            account,
            amount=dispute["amount"],
            currency=dispute["currency"],
            type_="adjustment",
            category="dispute_reversal",
            source=dispute["id"],
            description=f"Chargeback reversal for {charge['id']}",
        )
        dispute["_balance_transactions"] = [*dispute["_balance_transactions"], txn["id"]]
        dispute["status"] = "won"
        st.store.touch(dispute["id"])
        st.emit(ctx, account, "charge.dispute.funds_reinstated", dispute)
    else:
        dispute["status"] = "lost"
        st.store.touch(dispute["id"])
    charge["_dispute_status"] = dispute["status"]
    st.store.touch(charge["id"])
    st.emit(ctx, account, "charge.dispute.closed", dispute, previous)
    return dispute


def dispute_close_helper(st: EmulatorState, ctx: Ctx, p: Params, dispute_id: str) -> Obj:
    forms.check_allowed(p, ("outcome",))
    dispute = st.get_owned("dispute", dispute_id, ctx.account)
    outcome = forms.get_choice(p, "outcome", ("won", "lost"))
    if outcome is None:
        raise bad_param(
            "Missing required param: outcome.", param="outcome", code="parameter_missing"
        )
    return _close_dispute(st, ctx, dispute, outcome)


def dispute_balance_transaction_helper(
    st: EmulatorState, ctx: Ctx, p: Params, dispute_id: str
) -> Obj:
    """Attach one more balance transaction to a dispute (`amount`, signed: negative withdraws,
    positive reinstates; `fee`, signed: negative gives a fee back), as Stripe does in some
    markets (a counter fee, a fee refunded on a won dispute, a second adjustment). Emits
    charge.dispute.funds_withdrawn or .funds_reinstated."""
    forms.check_allowed(p, ("amount", "fee"))
    dispute = st.get_owned("dispute", dispute_id, ctx.account)
    amount = forms.get_int(p, "amount")
    fee = forms.get_int(p, "fee") or 0
    if amount is None:
        raise bad_param("Missing required param: amount.", param="amount", code="parameter_missing")
    account = st.store.owner[dispute_id]
    charge = st.store.objects[dispute["charge"]]
    debit = amount < 0 or (amount == 0 and fee > 0)
    txn = st.add_txn(
        account,
        amount=amount,
        currency=dispute["currency"],
        type_="adjustment",
        category="dispute" if debit else "dispute_reversal",
        source=dispute_id,
        fee=fee,
        fee_details=[
            {
                "amount": fee,
                "application": None,
                "currency": dispute["currency"],
                "description": "Dispute fee",
                "type": "stripe_fee",
            }
        ]
        if fee
        else [],
        description=f"Chargeback {'withdrawal' if debit else 'reversal'} for {charge['id']}",
    )
    dispute["_balance_transactions"] = [*dispute["_balance_transactions"], txn["id"]]
    st.store.touch(dispute_id)
    event = "charge.dispute.funds_withdrawn" if debit else "charge.dispute.funds_reinstated"
    st.emit(ctx, account, event, dispute)
    return dispute


def dispute_close(st: EmulatorState, ctx: Ctx, p: Params, dispute_id: str) -> Obj:
    """`POST /v1/disputes/{id}/close`: the merchant accepts the dispute (it is lost)."""
    forms.check_allowed(p, ())
    dispute = st.get_owned("dispute", dispute_id, ctx.account)
    return _close_dispute(st, ctx, dispute, "lost")


def dispute_update(st: EmulatorState, ctx: Ctx, p: Params, dispute_id: str) -> Obj:
    forms.check_allowed(p, ("evidence", "metadata", "submit"))
    dispute = st.get_owned("dispute", dispute_id, ctx.account)
    previous: Obj = {}
    evidence = p.get("evidence")
    if isinstance(evidence, dict):
        previous["evidence"] = dict(dispute["evidence"])
        dispute["evidence"] = {**dispute["evidence"], **evidence}
        dispute["evidence_details"] = {**dispute["evidence_details"], "has_evidence": True}
    _update_metadata(dispute, p, previous)
    if forms.get_bool(p, "submit", default=True) and dispute["status"] in OPEN_DISPUTE_STATUSES:
        previous["status"] = dispute["status"]
        dispute["status"] = "under_review"
        details = dispute["evidence_details"]
        dispute["evidence_details"] = {
            **details,
            "submission_count": details["submission_count"] + 1,
        }
    st.store.touch(dispute_id)
    st.emit(ctx, ctx.account, "charge.dispute.updated", dispute, previous)
    return dispute


def dispute_retrieve(st: EmulatorState, ctx: Ctx, p: Params, dispute_id: str) -> Obj:
    return st.get_owned("dispute", dispute_id, ctx.account)


def dispute_list(st: EmulatorState, ctx: Ctx, p: Params) -> Obj:
    return st.list_page(
        "dispute", ctx.account, p, "/v1/disputes", filters=("charge", "payment_intent")
    )


# -- helpers ---------------------------------------------------------------------------------


def _money(amount: int, currency: str) -> str:
    return f"{'$' if currency == 'usd' else currency.upper() + ' '}{amount / 100:.2f}"


def _apply_simple_updates(obj: Obj, p: Params, fields: tuple[str, ...]) -> dict[str, Any]:
    previous: dict[str, Any] = {}
    for field in fields:
        if field in p:
            previous[field] = obj.get(field)
            obj[field] = forms.get_str(p, field)
    return previous


def _update_metadata(obj: Obj, p: Params, previous: dict[str, Any]) -> None:
    if "metadata" in p:
        previous["metadata"] = dict(obj["metadata"])
        obj["metadata"] = forms.get_metadata(p, obj["metadata"])
