"""Errors of the payouts app, rooted in `config.errors.ApplicationError`.

PayoutError
├── TransitionRefused     the transition table does not allow from -> to (409)
├── PayoutNotFound        no payout with that id (404)
├── PayeeNotFound         no restaurant/rider with that id (404)
├── NothingToPay          the payee has nothing payable (below the minimum, negative, held)
├── ReturnBlocked         the transfer exists and was not reversed: cannot give the money back
├── ReversalRefused       Stripe refused to reverse the transfer (e.g. the account cannot cover it)
├── ReversalPending       Stripe's answer to a reversal is unknown: retry (same key) or wait
└── LeaseLost             another worker owns this payout now (internal: the step stops)
"""

from __future__ import annotations

from config.errors import ApplicationError


class PayoutError(ApplicationError):
    code = "payout_error"


class TransitionRefused(PayoutError):
    code = "transition_refused"
    http_status = 409


class PayoutNotFound(PayoutError):
    code = "payout_not_found"
    http_status = 404


class PayeeNotFound(PayoutError):
    code = "payee_not_found"
    http_status = 404


class NothingToPay(PayoutError):
    code = "nothing_to_pay"
    http_status = 409


class ReturnBlocked(PayoutError):
    code = "return_blocked"
    http_status = 409


class ReversalRefused(PayoutError):
    """Stripe refused the reversal (`stripe_code` in `extra`); nothing came back."""

    code = "reversal_refused"
    http_status = 409


class ReversalPending(PayoutError):
    """Stripe's answer to the reversal is unknown and the transfer does not show it yet:
    retrying sends the same idempotency key, and the `transfer.reversed` webhook returns the
    money if it happened."""

    code = "reversal_pending"
    http_status = 503


class LeaseLost(PayoutError):
    """A driver's lease on a payout expired and another worker claimed it."""

    code = "lease_lost"
    http_status = 409
