"""Business errors of the marketplace's money flows (the Stripe seam's own errors live in
`stripe_gateway.errors`). Each has a stable `code`; APIs answer `{"code", "message", ...}` with
its `http_status`; commands print the message."""

from __future__ import annotations

from config.errors import ApplicationError


class MarketplaceError(ApplicationError):
    code = "marketplace_error"


class NotFound(MarketplaceError):
    code = "not_found"
    http_status = 404


class InvalidInput(MarketplaceError):
    """A value the caller sent breaks a rule (amount, portion, code, window...)."""

    code = "invalid_input"


class InvalidState(MarketplaceError):
    """The object is not in a state that allows this (deliver an unpaid order...)."""

    code = "invalid_state"
    http_status = 409


class CouponUnavailable(MarketplaceError):
    """Unknown code, paused campaign, or outside its active window."""

    code = "coupon_unavailable"
    http_status = 409


class CouponExhausted(MarketplaceError):
    """The campaign's remaining budget cannot pay this order's discount."""

    code = "coupon_exhausted"
    http_status = 409


class CampaignOverBudget(MarketplaceError):
    code = "campaign_over_budget"
    http_status = 409


class RefundTooLarge(MarketplaceError):
    """The refund exceeds what was paid and not yet refunded."""

    code = "refund_exceeds_refundable"


class SelfApproval(MarketplaceError):
    """The four-eyes rule: whoever requested a refund may not approve or reject it."""

    code = "self_approval"
    http_status = 403


class CampaignClosed(MarketplaceError):
    """The campaign was closed: no funding, no pause/resume, no new orders."""

    code = "campaign_closed"
    http_status = 409
