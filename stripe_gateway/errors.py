"""Errors of the Stripe seam, rooted in `config.errors.ApplicationError`.

The payment-provider branch is what the Stripe seam (`stripe_gateway.client`) raises; no
other code ever sees a `stripe.*` exception.

    PaymentProviderError                 anything Stripe said or failed to say
    ├── CardDeclined                     402: the customer's card was refused (business outcome)
    ├── InvalidRequest                   Stripe refused the parameters (incl. idempotency mismatch)
    │   └── ProviderObjectNotFound       404 `resource_missing` on a retrieve
    ├── ProviderConfigurationError       bad/revoked API key, missing permission: fix config
    └── RetryableProviderError           retry later, with the SAME idempotency key
        ├── OutcomeUnknown               a POST timed out / got a 5xx: it may or may not have
        │                                happened; resolve by looking the object up
        └── ProviderUnavailable          rate limited, or a read failed: nothing happened

`retryable` is the one attribute callers branch on. `AssetNotSupported` is raised before any
call, when an amount cannot be expressed in Stripe's minor unit.
"""

from typing import Any

from config.errors import ApplicationError


class PaymentProviderError(ApplicationError):
    """A Stripe call failed. `extra` carries Stripe's code/param/request id when known."""

    code = "payment_provider_error"
    http_status = 502
    retryable = False

    def __init__(
        self,
        message: str,
        *,
        code: str | None = None,
        extra: dict[str, Any] | None = None,
        operation: str = "",
        stripe_code: str | None = None,
        param: str | None = None,
        provider_status: int | None = None,
        request_id: str | None = None,
    ):
        details = {
            "operation": operation or None,
            "stripe_code": stripe_code,
            "param": param,
            "provider_status": provider_status,
            "request_id": request_id,
        }
        merged = {k: v for k, v in details.items() if v is not None}
        merged.update(extra or {})
        super().__init__(message, code=code, extra=merged)
        self.operation = operation
        self.stripe_code = stripe_code
        self.param = param
        self.provider_status = provider_status
        self.request_id = request_id


class CardDeclined(PaymentProviderError):
    """The card was declined (`decline_code` in `extra` when Stripe gave one)."""

    code = "card_declined"
    http_status = 402


class InvalidRequest(PaymentProviderError):
    """Stripe rejected the request's parameters; retrying the same call will fail again."""

    code = "provider_invalid_request"
    http_status = 400


class ProviderObjectNotFound(InvalidRequest):
    """The object does not exist at Stripe (404 `resource_missing`)."""

    code = "provider_object_not_found"
    http_status = 404


class ProviderConfigurationError(PaymentProviderError):
    """Authentication or permission failure: our API key or account setup is wrong."""

    code = "provider_misconfigured"
    http_status = 503


class RetryableProviderError(PaymentProviderError):
    """Transient: retry later with the same idempotency key and parameters."""

    code = "provider_retryable"
    http_status = 503
    retryable = True


class OutcomeUnknown(RetryableProviderError):
    """A POST may or may not have taken effect (timeout, connection reset, 5xx, 409).

    Never retry with a *new* idempotency key: look the object up (e.g. `transfers_find`) or
    retry with the same key, which Stripe answers with the first result.
    """

    code = "provider_outcome_unknown"


class ProviderUnavailable(RetryableProviderError):
    """Stripe is rate limiting us or unreachable for a read; nothing was changed."""

    code = "provider_unavailable"


class AssetNotSupported(ApplicationError, ValueError):
    """An asset Stripe cannot represent as-is (scale differs from Stripe's minor unit)."""

    code = "asset_not_supported"
    http_status = 400


class StripeCallInTransaction(RuntimeError):
    """A Stripe call was attempted inside an open database transaction (a programming error).

    Raised only when `settings.STRIPE_FORBID_IN_ATOMIC` is true (tests); production logs it.
    """
