"""The emulated /v1 endpoints: a routing table from (method, path) to handler functions.

A handler is `handler(state, ctx, params, *path_ids) -> object | list`; it runs under the
state lock and raises `ApiError` for Stripe error answers.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from . import connect, payments, webhook_endpoints

Handler = Callable[..., Any]

_TABLE: list[tuple[str, str, Handler]] = [
    # customers
    ("POST", "/v1/customers", payments.customer_create),
    ("GET", "/v1/customers", payments.customer_list),
    ("GET", "/v1/customers/{id}", payments.customer_retrieve),
    ("POST", "/v1/customers/{id}", payments.customer_update),
    # connected accounts
    ("POST", "/v1/accounts", connect.account_create),
    ("GET", "/v1/accounts", connect.account_list),
    ("GET", "/v1/accounts/{id}", connect.account_retrieve),
    ("POST", "/v1/accounts/{id}", connect.account_update),
    ("GET", "/v1/account", connect.platform_account),
    # payment intents
    ("POST", "/v1/payment_intents", payments.payment_intent_create),
    ("GET", "/v1/payment_intents", payments.payment_intent_list),
    ("GET", "/v1/payment_intents/{id}", payments.payment_intent_retrieve),
    ("POST", "/v1/payment_intents/{id}", payments.payment_intent_update),
    ("POST", "/v1/payment_intents/{id}/confirm", payments.payment_intent_confirm),
    ("POST", "/v1/payment_intents/{id}/cancel", payments.payment_intent_cancel),
    # charges
    ("GET", "/v1/charges", payments.charge_list),
    ("GET", "/v1/charges/{id}", payments.charge_retrieve),
    ("POST", "/v1/charges/{id}", payments.charge_update),
    ("GET", "/v1/charges/{id}/refunds", payments.charge_refunds_list),
    # refunds
    ("POST", "/v1/refunds", payments.refund_create),
    ("GET", "/v1/refunds", payments.refund_list),
    ("GET", "/v1/refunds/{id}", payments.refund_retrieve),
    ("POST", "/v1/refunds/{id}", payments.refund_update),
    ("POST", "/v1/test_helpers/refunds/{id}/fail", payments.refund_fail_helper),
    # disputes
    ("GET", "/v1/disputes", payments.dispute_list),
    ("GET", "/v1/disputes/{id}", payments.dispute_retrieve),
    ("POST", "/v1/disputes/{id}", payments.dispute_update),
    ("POST", "/v1/disputes/{id}/close", payments.dispute_close),
    ("POST", "/v1/test_helpers/charges/{id}/dispute", payments.dispute_create_helper),
    ("POST", "/v1/test_helpers/disputes/{id}/close", payments.dispute_close_helper),
    (
        "POST",
        "/v1/test_helpers/disputes/{id}/balance_transactions",
        payments.dispute_balance_transaction_helper,
    ),
    # transfers and reversals
    ("POST", "/v1/transfers", connect.transfer_create),
    ("GET", "/v1/transfers", connect.transfer_list),
    ("GET", "/v1/transfers/{id}", connect.transfer_retrieve),
    ("POST", "/v1/transfers/{id}", connect.transfer_update),
    ("POST", "/v1/transfers/{id}/reversals", connect.reversal_create),
    ("GET", "/v1/transfers/{id}/reversals", connect.reversal_list),
    ("GET", "/v1/transfers/{id}/reversals/{id}", connect.reversal_retrieve),
    # payouts
    ("POST", "/v1/payouts", connect.payout_create),
    ("GET", "/v1/payouts", connect.payout_list),
    ("GET", "/v1/payouts/{id}", connect.payout_retrieve),
    ("POST", "/v1/payouts/{id}", connect.payout_update),
    ("POST", "/v1/payouts/{id}/cancel", connect.payout_cancel),
    ("POST", "/v1/test_helpers/payouts/automatic", connect.payout_automatic_helper),
    ("POST", "/v1/test_helpers/payouts/{id}/paid", connect.payout_paid_helper),
    ("POST", "/v1/test_helpers/payouts/{id}/failed", connect.payout_failed_helper),
    # top-ups
    ("POST", "/v1/topups", connect.topup_create),
    ("GET", "/v1/topups", connect.topup_list),
    ("GET", "/v1/topups/{id}", connect.topup_retrieve),
    ("POST", "/v1/test_helpers/topups/{id}/reverse", connect.topup_reverse_helper),
    # balance and balance transactions
    ("GET", "/v1/balance", connect.balance_retrieve),
    ("GET", "/v1/balance_transactions", connect.balance_transaction_list),
    ("GET", "/v1/balance_transactions/{id}", connect.balance_transaction_retrieve),
    ("GET", "/v1/balance/history", connect.balance_transaction_list),
    ("GET", "/v1/balance/history/{id}", connect.balance_transaction_retrieve),
    # events
    ("GET", "/v1/events", connect.event_list),
    ("GET", "/v1/events/{id}", connect.event_retrieve),
    # clock
    ("POST", "/v1/test_helpers/advance_clock", connect.advance_clock_helper),
    # webhook endpoints
    ("POST", "/v1/webhook_endpoints", webhook_endpoints.webhook_endpoint_create),
    ("GET", "/v1/webhook_endpoints", webhook_endpoints.webhook_endpoint_list),
    ("GET", "/v1/webhook_endpoints/{id}", webhook_endpoints.webhook_endpoint_retrieve),
    ("POST", "/v1/webhook_endpoints/{id}", webhook_endpoints.webhook_endpoint_update),
]


def _compile(template: str) -> re.Pattern[str]:
    return re.compile("^" + re.escape(template).replace(r"\{id\}", "([A-Za-z0-9_\\-]+)") + "$")


ROUTES: list[tuple[str, re.Pattern[str], Handler]] = [
    (method, _compile(template), handler) for method, template, handler in _TABLE
]
ENDPOINTS: list[str] = [f"{method} {template}" for method, template, _ in _TABLE]


def resolve(method: str, path: str) -> tuple[Handler, tuple[str, ...]] | bool | None:
    """(handler, path ids) for a route; False when the path exists for another method."""
    path_known = False
    for route_method, pattern, handler in ROUTES:
        match = pattern.match(path)
        if match is None:
            continue
        if route_method == method:
            return handler, match.groups()
        path_known = True
    return False if path_known else None
