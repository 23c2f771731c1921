"""Connect and money movement: accounts, transfers, reversals, payouts, top-ups, the
balance, balance transactions, events and the emulator clock.

A transfer debits the platform (`transfer` txn) and credits the destination with a `py_`
payment (a charge on the connected account, `payment` txn). A reversal does the opposite
(`transfer_refund` on the platform, `payment_refund` on the destination) and needs the
destination's available balance, as on Stripe.
"""

from __future__ import annotations

import hashlib

from .. import forms
from ..errors import bad_param, invalid, no_such
from ..forms import Params
from ..state import PLATFORM, Ctx, EmulatorState, new_id
from ..store import Obj

ACCOUNT_PARAMS = [
    "type",
    "country",
    "email",
    "business_type",
    "capabilities",
    "metadata",
    "business_profile",
    "company",
    "individual",
    "tos_acceptance",
    "settings",
    "external_account",
    "default_currency",
    "controller",
    "account_token",
]


def _bank_account_id(account: str) -> str:
    digest = hashlib.sha256((account or "platform").encode()).hexdigest()[:24]
    return f"ba_{digest}"


def _external_accounts(account_id: str) -> Obj:
    bank = {
        "id": _bank_account_id(account_id),
        "object": "bank_account",
        "account": account_id,
        "account_holder_name": None,
        "account_holder_type": None,
        "bank_name": "STRIPE TEST BANK",
        "country": "US",
        "currency": "usd",
        "default_for_currency": True,
        "last4": "6789",
        "routing_number": "110000000",
        "status": "new",
    }
    return {
        "object": "list",
        "data": [bank],
        "has_more": False,
        "total_count": 1,
        "url": f"/v1/accounts/{account_id}/external_accounts",
    }


def _requirements() -> Obj:
    return {
        "alternatives": [],
        "current_deadline": None,
        "currently_due": [],
        "disabled_reason": None,
        "errors": [],
        "eventually_due": [],
        "past_due": [],
        "pending_verification": [],
    }


def account_create(st: EmulatorState, ctx: Ctx, p: Params) -> Obj:
    forms.check_allowed(p, ACCOUNT_PARAMS)
    if ctx.account != PLATFORM:
        raise invalid("Connected accounts cannot create accounts.", param="type")
    account_type = forms.get_choice(p, "type", ("express", "custom", "standard"), default="express")
    account_id = "acct_" + new_id("x")[2:18]
    raw_profile = p.get("business_profile")
    business_profile: Obj = raw_profile if isinstance(raw_profile, dict) else {}
    account: Obj = {
        "id": account_id,
        "object": "account",
        "business_profile": {
            "mcc": business_profile.get("mcc"),
            "name": business_profile.get("name"),
            "product_description": business_profile.get("product_description"),
            "support_email": None,
            "support_phone": None,
            "support_url": None,
            "url": business_profile.get("url"),
        },
        "business_type": forms.get_str(p, "business_type"),
        "capabilities": {"card_payments": "active", "transfers": "active"},
        "charges_enabled": True,
        "controller": {"type": "application", "is_controller": True},
        "country": (forms.get_str(p, "country") or "US").upper(),
        "created": st.now(),
        "default_currency": (forms.get_str(p, "default_currency") or "usd").lower(),
        "details_submitted": True,
        "email": forms.get_str(p, "email"),
        "external_accounts": _external_accounts(account_id),
        "future_requirements": _requirements(),
        "livemode": False,
        "metadata": forms.get_metadata(p),
        "payouts_enabled": True,
        "requirements": _requirements(),
        "settings": {
            "payouts": {
                "debit_negative_balances": True,
                # Stripe's default for new accounts in the US: automatic daily payouts.
                "schedule": {"delay_days": 2, "interval": "daily"},
                "statement_descriptor": None,
            }
        },
        "tos_acceptance": {"date": None, "ip": None, "user_agent": None},
        "type": account_type,
    }
    st.insert("account", PLATFORM, account)
    # The emulator skips onboarding: accounts are enabled at once, which Stripe announces
    # with account.updated (a Connect event, carrying `account`).
    st.emit(
        ctx,
        account_id,
        "account.updated",
        account,
        {"charges_enabled": False, "payouts_enabled": False, "details_submitted": False},
    )
    return account


def account_retrieve(st: EmulatorState, ctx: Ctx, p: Params, account_id: str) -> Obj:
    if ctx.account not in (PLATFORM, account_id):
        raise no_such("account", account_id)
    obj = st.store.get(account_id)
    if obj is None or st.store.kind_of[account_id] != "account":
        raise no_such("account", account_id)
    return obj


def platform_account(st: EmulatorState, ctx: Ctx, p: Params) -> Obj:
    """`GET /v1/account`: the connected account under Stripe-Account, else the platform."""
    if ctx.account != PLATFORM:
        return st.store.objects[ctx.account]
    platform_id = st.store.kv_get("meta", "platform_account_id")
    if platform_id is None:
        platform_id = "acct_" + new_id("x")[2:18]
        st.store.kv_set("meta", "platform_account_id", platform_id)
    return {
        "id": platform_id,
        "object": "account",
        "business_profile": {"name": "Stripe emulator platform", "url": None},
        "capabilities": {"card_payments": "active", "transfers": "active"},
        "charges_enabled": True,
        "country": "US",
        "default_currency": "usd",
        "details_submitted": True,
        "email": None,
        "metadata": {},
        "payouts_enabled": True,
        "settings": {"payouts": {"schedule": {"delay_days": 2, "interval": "daily"}}},
        "type": "standard",
    }


def account_update(st: EmulatorState, ctx: Ctx, p: Params, account_id: str) -> Obj:
    forms.check_allowed(p, ACCOUNT_PARAMS)
    account = account_retrieve(st, ctx, p, account_id)
    previous: Obj = {}
    for field in ("email", "business_type"):
        if field in p:
            previous[field] = account.get(field)
            account[field] = forms.get_str(p, field)
    if "metadata" in p:
        previous["metadata"] = dict(account["metadata"])
        account["metadata"] = forms.get_metadata(p, account["metadata"])
    st.store.touch(account_id)
    st.emit(ctx, account_id, "account.updated", account, previous)
    return account


def account_list(st: EmulatorState, ctx: Ctx, p: Params) -> Obj:
    return st.list_page("account", PLATFORM, p, "/v1/accounts")


# -- transfers -------------------------------------------------------------------------------

TRANSFER_PARAMS = [
    "amount",
    "currency",
    "destination",
    "transfer_group",
    "source_transaction",
    "metadata",
    "description",
    "source_type",
]


def transfer_create(st: EmulatorState, ctx: Ctx, p: Params) -> Obj:
    forms.check_allowed(p, TRANSFER_PARAMS)
    if ctx.account != PLATFORM:
        raise invalid("The emulator only creates transfers from the platform account.")
    amount = forms.req_int(p, "amount", minimum=1)
    currency = forms.get_currency(p)
    destination = forms.req_str(p, "destination")
    st.connected_account(destination)
    source_transaction = forms.get_str(p, "source_transaction")
    metadata = forms.get_metadata(p)
    now = st.now()
    available_on = now
    if source_transaction is not None:
        charge = st.get_owned("charge", source_transaction, PLATFORM, param="source_transaction")
        if charge["status"] != "succeeded":
            raise invalid(
                f"The source_transaction {source_transaction} has not succeeded.",
                param="source_transaction",
            )
        if charge["currency"] != currency:
            raise invalid(
                "The currency of source_transaction's balance transaction"
                f" ({charge['currency']}) must be the same as the transfer currency ({currency}).",
                param="currency",
            )
        already = sum(
            st.store.objects[i]["amount"]
            for i in st.store.ids_in_index(
                PLATFORM, "transfer", "source_transaction", source_transaction
            )
        )
        if already + amount > charge["amount"]:
            raise invalid(
                f"Insufficient funds in source_transaction {source_transaction}: {charge['amount'] - already}"
                f" remain, {amount} requested.",
                code="balance_insufficient",
                param="amount",
            )
        # Tied to the charge's funds: settles when the charge does (asynchronous capture:
        # its balance transaction may not be attached yet, its funds come later still).
        charge_txn_id = charge.get("balance_transaction")
        available_on = (
            max(now, int(st.store.objects[charge_txn_id]["available_on"]))
            if charge_txn_id
            else st.funds_available_on()
        )
    elif st.available(PLATFORM, currency) < amount:
        raise invalid(
            "You have insufficient available funds in your Stripe account. Try adding funds"
            " directly to your available balance by creating Charges using the 4000000000000077"
            " Visa test card.",
            code="balance_insufficient",
        )
    transfer_id = new_id("tr")
    payment_id = new_id("py")
    txn = st.add_txn(
        PLATFORM,
        amount=-amount,
        currency=currency,
        type_="transfer",
        category="transfer",
        source=transfer_id,
        description=forms.get_str(p, "description"),
        available_on=available_on,
    )
    dest_txn = st.add_txn(
        destination,
        amount=amount,
        currency=currency,
        type_="payment",
        category="transfer",
        source=payment_id,
        available_on=available_on,
    )
    payment: Obj = {
        "id": payment_id,
        "object": "charge",
        "amount": amount,
        "amount_captured": amount,
        "amount_refunded": 0,
        "application": None,
        "balance_transaction": dest_txn["id"],
        "captured": True,
        "created": now,
        "currency": currency,
        "customer": None,
        "description": None,
        "disputed": False,
        "livemode": False,
        "metadata": {},
        "paid": True,
        "payment_intent": None,
        "payment_method": None,
        "refunded": False,
        "source_transfer": transfer_id,
        "status": "succeeded",
        "transfer_group": forms.get_str(p, "transfer_group"),
    }
    st.insert("charge", destination, payment)
    transfer: Obj = {
        "id": transfer_id,
        "object": "transfer",
        "amount": amount,
        "amount_reversed": 0,
        "balance_transaction": txn["id"],
        "created": now,
        "currency": currency,
        "description": forms.get_str(p, "description"),
        "destination": destination,
        "destination_payment": payment_id,
        "livemode": False,
        "metadata": metadata,
        "reversed": False,
        "source_transaction": source_transaction,
        "source_type": forms.get_str(p, "source_type") or "card",
        "transfer_group": forms.get_str(p, "transfer_group"),
    }
    st.insert("transfer", PLATFORM, transfer)
    st.emit(ctx, PLATFORM, "transfer.created", transfer)
    return transfer


def transfer_retrieve(st: EmulatorState, ctx: Ctx, p: Params, transfer_id: str) -> Obj:
    return st.get_owned("transfer", transfer_id, ctx.account)


def transfer_update(st: EmulatorState, ctx: Ctx, p: Params, transfer_id: str) -> Obj:
    forms.check_allowed(p, ("metadata", "description"))
    transfer = st.get_owned("transfer", transfer_id, ctx.account)
    previous: Obj = {}
    if "description" in p:
        previous["description"] = transfer["description"]
        transfer["description"] = forms.get_str(p, "description")
    if "metadata" in p:
        previous["metadata"] = dict(transfer["metadata"])
        transfer["metadata"] = forms.get_metadata(p, transfer["metadata"])
    st.store.touch(transfer_id)
    st.emit(ctx, ctx.account, "transfer.updated", transfer, previous)
    return transfer


def transfer_list(st: EmulatorState, ctx: Ctx, p: Params) -> Obj:
    return st.list_page(
        "transfer", ctx.account, p, "/v1/transfers", filters=("destination", "transfer_group")
    )


def reversal_create(st: EmulatorState, ctx: Ctx, p: Params, transfer_id: str) -> Obj:
    forms.check_allowed(p, ("amount", "metadata", "description", "refund_application_fee"))
    transfer = st.get_owned("transfer", transfer_id, ctx.account)
    remaining = transfer["amount"] - transfer["amount_reversed"]
    amount = forms.get_int(p, "amount", minimum=1)
    if amount is None:
        amount = remaining
    if remaining <= 0:
        raise invalid(f"Transfer {transfer_id} has already been fully reversed.")
    if amount > remaining:
        raise invalid(
            f"Reversal amount ({amount}) is greater than the amount not yet reversed on the"
            f" transfer ({remaining}).",
            code="amount_too_large",
            param="amount",
        )
    destination = transfer["destination"]
    currency = transfer["currency"]
    if st.available(destination, currency) < amount:
        raise invalid(
            "Insufficient funds in the destination account to reverse this transfer:"
            f" {st.available(destination, currency)} {currency} available, {amount} requested.",
            code="balance_insufficient",
            param="amount",
        )
    reversal_id = new_id("trr")
    payment_refund_id = new_id("pyr")
    txn = st.add_txn(
        PLATFORM,
        amount=amount,
        currency=currency,
        type_="transfer_refund",
        category="transfer_reversal",
        source=reversal_id,
    )
    dest_txn = st.add_txn(
        destination,
        amount=-amount,
        currency=currency,
        type_="payment_refund",
        category="transfer_reversal",
        source=payment_refund_id,
    )
    now = st.now()
    payment = st.store.objects[transfer["destination_payment"]]
    payment_refund: Obj = {
        "id": payment_refund_id,
        "object": "refund",
        "amount": amount,
        "balance_transaction": dest_txn["id"],
        "charge": payment["id"],
        "created": now,
        "currency": currency,
        "metadata": {},
        "payment_intent": None,
        "reason": None,
        "source_transfer_reversal": reversal_id,
        "status": "succeeded",
        "transfer_reversal": None,
    }
    st.insert("refund", destination, payment_refund)
    payment["amount_refunded"] += amount
    payment["refunded"] = payment["amount_refunded"] >= payment["amount"]
    st.store.touch(payment["id"])
    reversal: Obj = {
        "id": reversal_id,
        "object": "transfer_reversal",
        "amount": amount,
        "balance_transaction": txn["id"],
        "created": now,
        "currency": currency,
        "destination_payment_refund": payment_refund_id,
        "metadata": forms.get_metadata(p),
        "source_refund": None,
        "transfer": transfer_id,
    }
    st.insert("transfer_reversal", PLATFORM, reversal)
    previous = {"amount_reversed": transfer["amount_reversed"], "reversed": transfer["reversed"]}
    transfer["amount_reversed"] += amount
    transfer["reversed"] = transfer["amount_reversed"] >= transfer["amount"]
    st.store.touch(transfer_id)
    st.emit(ctx, PLATFORM, "transfer.reversed", transfer, previous)
    return reversal


def reversal_list(st: EmulatorState, ctx: Ctx, p: Params, transfer_id: str) -> Obj:
    st.get_owned("transfer", transfer_id, ctx.account)
    return st.list_page(
        "transfer_reversal",
        ctx.account,
        {**p, "transfer": transfer_id},
        f"/v1/transfers/{transfer_id}/reversals",
        filters=("transfer",),
    )


def reversal_retrieve(
    st: EmulatorState, ctx: Ctx, p: Params, transfer_id: str, reversal_id: str
) -> Obj:
    reversal = st.get_owned("transfer_reversal", reversal_id, ctx.account)
    if reversal["transfer"] != transfer_id:
        raise no_such("transfer_reversal", reversal_id)
    return reversal


# -- payouts ---------------------------------------------------------------------------------

PAYOUT_PARAMS = [
    "amount",
    "currency",
    "description",
    "metadata",
    "method",
    "statement_descriptor",
    "destination",
    "source_type",
]


def _new_payout(
    st: EmulatorState, account: str, *, amount: int, currency: str, automatic: bool, p: Params
) -> Obj:
    payout_id = new_id("po")
    now = st.now()
    method = forms.get_choice(p, "method", ("standard", "instant"), default="standard")
    txn = st.add_txn(
        account,
        amount=-amount,
        currency=currency,
        type_="payout",
        category="payout",
        source=payout_id,
        description=forms.get_str(p, "description") or "STRIPE PAYOUT",
    )
    payout: Obj = {
        "id": payout_id,
        "object": "payout",
        "amount": amount,
        "application_fee": None,
        "application_fee_amount": None,
        "arrival_date": now if method == "instant" else now + 2 * 86400,
        "automatic": automatic,
        "balance_transaction": txn["id"],
        "created": now,
        "currency": currency,
        "description": forms.get_str(p, "description") or "STRIPE PAYOUT",
        "destination": forms.get_str(p, "destination") or _bank_account_id(account),
        "failure_balance_transaction": None,
        "failure_code": None,
        "failure_message": None,
        "livemode": False,
        "metadata": forms.get_metadata(p),
        "method": method,
        "original_payout": None,
        "reconciliation_status": "in_progress" if automatic else "not_applicable",
        "reversed_by": None,
        "source_type": forms.get_str(p, "source_type") or "card",
        "statement_descriptor": forms.get_str(p, "statement_descriptor"),
        "status": "in_transit" if automatic else "pending",
        "type": "bank_account",
    }
    st.insert("payout", account, payout)
    return payout


def payout_create(st: EmulatorState, ctx: Ctx, p: Params) -> Obj:
    forms.check_allowed(p, PAYOUT_PARAMS)
    amount = forms.req_int(p, "amount", minimum=1)
    currency = forms.get_currency(p)
    available = st.available(ctx.account, currency)
    if available < amount:
        raise invalid(
            f"You have insufficient funds in your Stripe account for this payout: {available}"
            f" {currency} available, {amount} requested.",
            code="balance_insufficient",
            param="amount",
        )
    payout = _new_payout(st, ctx.account, amount=amount, currency=currency, automatic=False, p=p)
    st.emit(ctx, ctx.account, "payout.created", payout)
    return payout


def payout_automatic_helper(st: EmulatorState, ctx: Ctx, p: Params) -> Obj:
    """Run an automatic payout now: sweep every unpaid available txn of the currency.

    The swept txns (and the payout's own txn) are listed by
    `GET /v1/balance_transactions?payout=po_...`; their `net` sums to the payout amount.
    """
    forms.check_allowed(p, ("currency", "metadata", "description"))
    currency = (forms.get_str(p, "currency") or "usd").lower()
    account = ctx.account
    swept = [
        txn
        for txn in st.store.iter_kind("balance_transaction", account)
        if txn["currency"] == currency
        and txn["status"] == "available"
        and txn.get("_payout") is None
        and txn["type"] not in ("payout", "payout_cancel", "payout_failure")
    ]
    amount = sum(txn["net"] for txn in swept)
    if amount <= 0 or st.available(account, currency) < amount:
        raise invalid(
            f"No funds to pay out automatically: {amount} {currency} unpaid,"
            f" {st.available(account, currency)} available.",
            code="balance_insufficient",
        )
    payout = _new_payout(st, account, amount=amount, currency=currency, automatic=True, p=p)
    for txn in [*swept, st.store.objects[payout["balance_transaction"]]]:
        txn["_payout"] = payout["id"]
        st.store.add_to_index(txn["id"], "payout", payout["id"])
    st.emit(ctx, account, "payout.created", payout)
    return payout


def _payout_transition(
    st: EmulatorState, ctx: Ctx, payout_id: str, allowed: tuple[str, ...]
) -> Obj:
    payout = st.get_owned("payout", payout_id, ctx.account)
    if payout["status"] not in allowed:
        raise invalid(
            f"Payout {payout_id} has status {payout['status']}; expected one of {', '.join(allowed)}.",
        )
    return payout


def payout_paid_helper(st: EmulatorState, ctx: Ctx, p: Params, payout_id: str) -> Obj:
    forms.check_allowed(p, ())
    payout = _payout_transition(st, ctx, payout_id, ("pending", "in_transit"))
    previous = {"status": payout["status"]}
    payout["status"] = "paid"
    if payout["automatic"]:
        payout["reconciliation_status"] = "completed"
    st.store.touch(payout_id)
    st.emit(None, ctx.account, "payout.paid", payout, previous)
    if payout["automatic"]:
        st.emit(None, ctx.account, "payout.reconciliation_completed", payout)
    return payout


def payout_failed_helper(st: EmulatorState, ctx: Ctx, p: Params, payout_id: str) -> Obj:
    forms.check_allowed(p, ("failure_code", "failure_message"))
    payout = _payout_transition(st, ctx, payout_id, ("pending", "in_transit", "paid"))
    txn = st.add_txn(
        ctx.account,
        amount=payout["amount"],
        currency=payout["currency"],
        type_="payout_failure",
        category="payout_reversal",
        source=payout_id,
        description="PAYOUT FAILURE",
    )
    previous = {
        "status": payout["status"],
        "failure_code": None,
        "failure_balance_transaction": None,
    }
    payout["status"] = "failed"
    payout["failure_balance_transaction"] = txn["id"]
    payout["failure_code"] = forms.get_str(p, "failure_code") or "account_closed"
    payout["failure_message"] = (
        forms.get_str(p, "failure_message") or "The bank account has been closed."
    )
    st.store.touch(payout_id)
    st.emit(None, ctx.account, "payout.failed", payout, previous)
    return payout


def payout_cancel(st: EmulatorState, ctx: Ctx, p: Params, payout_id: str) -> Obj:
    forms.check_allowed(p, ())
    payout = _payout_transition(st, ctx, payout_id, ("pending",))
    txn = st.add_txn(
        ctx.account,
        amount=payout["amount"],
        currency=payout["currency"],
        type_="payout_cancel",
        category="payout_reversal",
        source=payout_id,
        description="PAYOUT CANCELED",
    )
    previous = {"status": payout["status"]}
    payout["status"] = "canceled"
    payout["failure_balance_transaction"] = txn["id"]
    st.store.touch(payout_id)
    st.emit(ctx, ctx.account, "payout.canceled", payout, previous)
    return payout


def payout_retrieve(st: EmulatorState, ctx: Ctx, p: Params, payout_id: str) -> Obj:
    return st.get_owned("payout", payout_id, ctx.account)


def payout_update(st: EmulatorState, ctx: Ctx, p: Params, payout_id: str) -> Obj:
    forms.check_allowed(p, ("metadata",))
    payout = st.get_owned("payout", payout_id, ctx.account)
    previous = {"metadata": dict(payout["metadata"])}
    payout["metadata"] = forms.get_metadata(p, payout["metadata"])
    st.store.touch(payout_id)
    st.emit(ctx, ctx.account, "payout.updated", payout, previous)
    return payout


def payout_list(st: EmulatorState, ctx: Ctx, p: Params) -> Obj:
    status = forms.get_str(p, "status")
    return st.list_page(
        "payout",
        ctx.account,
        p,
        "/v1/payouts",
        extra_eq={"status": status} if status else None,
        filters=("destination",),
        allowed=("status", "arrival_date"),
    )


# -- top-ups ---------------------------------------------------------------------------------


def topup_create(st: EmulatorState, ctx: Ctx, p: Params) -> Obj:
    forms.check_allowed(
        p,
        (
            "amount",
            "currency",
            "description",
            "metadata",
            "statement_descriptor",
            "source",
            "transfer_group",
        ),
    )
    amount = forms.req_int(p, "amount", minimum=1)
    currency = forms.get_currency(p)
    topup_id = new_id("tu")
    available_on = st.funds_available_on()
    txn = st.add_txn(
        ctx.account,
        amount=amount,
        currency=currency,
        type_="topup",
        category="topup",
        source=topup_id,
        description=forms.get_str(p, "description"),
        available_on=available_on,
    )
    topup: Obj = {
        "id": topup_id,
        "object": "topup",
        "amount": amount,
        "balance_transaction": txn["id"],
        "created": st.now(),
        "currency": currency,
        "description": forms.get_str(p, "description"),
        "expected_availability_date": available_on,
        "failure_code": None,
        "failure_message": None,
        "livemode": False,
        "metadata": forms.get_metadata(p),
        "source": None,
        "statement_descriptor": forms.get_str(p, "statement_descriptor"),
        "status": "succeeded",
        "transfer_group": forms.get_str(p, "transfer_group"),
    }
    st.insert("topup", ctx.account, topup)
    st.emit(ctx, ctx.account, "topup.created", topup)
    st.emit(ctx, ctx.account, "topup.succeeded", topup)
    return topup


def topup_reverse_helper(st: EmulatorState, ctx: Ctx, p: Params, topup_id: str) -> Obj:
    """Stripe takes a succeeded top-up back: a `topup_reversal` balance transaction (source:
    the top-up), status `reversed`, `topup.reversed`. (No public API does this: a test helper.)"""
    forms.check_allowed(p, ())
    topup = st.get_owned("topup", topup_id, ctx.account)
    if topup["status"] != "succeeded":
        raise invalid(
            f"Top-up {topup_id} has status {topup['status']} and cannot be reversed.",
            code="topup_unexpected_state",
        )
    st.add_txn(
        ctx.account,
        amount=-topup["amount"],
        currency=topup["currency"],
        type_="topup_reversal",
        category="topup_reversal",
        source=topup_id,
        description="TOPUP REVERSAL",
    )
    previous = {"status": topup["status"]}
    topup["status"] = "reversed"
    st.store.touch(topup_id)
    st.emit(ctx, ctx.account, "topup.reversed", topup, previous)
    return topup


def topup_retrieve(st: EmulatorState, ctx: Ctx, p: Params, topup_id: str) -> Obj:
    return st.get_owned("topup", topup_id, ctx.account)


def topup_list(st: EmulatorState, ctx: Ctx, p: Params) -> Obj:
    return st.list_page("topup", ctx.account, p, "/v1/topups")


# -- balance, balance transactions, events ---------------------------------------------------


def balance_retrieve(st: EmulatorState, ctx: Ctx, p: Params) -> Obj:
    return st.balance_obj(ctx.account)


def balance_transaction_retrieve(st: EmulatorState, ctx: Ctx, p: Params, txn_id: str) -> Obj:
    return st.get_owned("balance_transaction", txn_id, ctx.account, label="balance transaction")


def balance_transaction_list(st: EmulatorState, ctx: Ctx, p: Params) -> Obj:
    payout_id = forms.get_str(p, "payout")
    if payout_id is not None:
        payout = st.get_owned("payout", payout_id, ctx.account, param="payout")
        if not payout["automatic"]:
            raise invalid(
                "Balance transaction history can only be filtered on automatic payouts, not"
                " manual payouts.",
                param="payout",
            )
    currency = forms.get_str(p, "currency")
    return st.list_page(
        "balance_transaction",
        ctx.account,
        p,
        "/v1/balance_transactions",
        filters=("payout", "source", "type"),
        extra_eq={"currency": currency.lower()} if currency else None,
        allowed=("currency",),
    )


def event_retrieve(st: EmulatorState, ctx: Ctx, p: Params, event_id: str) -> Obj:
    return st.get_owned("event", event_id, ctx.account)


def event_list(st: EmulatorState, ctx: Ctx, p: Params) -> Obj:
    type_ = forms.get_str(p, "type")
    types = p.get("types")
    delivery = p.get("delivery_success")
    predicates = []
    params = dict(p)
    if type_ is not None and "*" in type_:
        prefix = type_.split("*", 1)[0]
        predicates.append(lambda e: str(e["type"]).startswith(prefix))
        params.pop("type")
    if types is not None:
        if not isinstance(types, list) or not all(isinstance(t, str) for t in types):
            raise bad_param("Invalid array", param="types")
        wanted = set(types)
        predicates.append(lambda e: e["type"] in wanted)
    if delivery is not None:
        want_success = forms.get_bool(p, "delivery_success")
        predicates.append(lambda e: (e.get("_delivery_success") is True) == want_success)

    def predicate(event: Obj) -> bool:
        return all(check(event) for check in predicates)

    return st.list_page(
        "event",
        ctx.account,
        params,
        "/v1/events",
        filters=("type",),
        predicate=predicate if predicates else None,
        allowed=("types", "delivery_success"),
    )


def advance_clock_helper(st: EmulatorState, ctx: Ctx, p: Params) -> Obj:
    forms.check_allowed(p, ("seconds",))
    seconds = forms.req_int(p, "seconds", minimum=0)
    st.clock_offset += seconds
    st.store.kv_set("meta", "clock_offset", st.clock_offset)
    st.tick()
    return {"object": "emulator_clock", "now": st.now(), "offset_seconds": st.clock_offset}
