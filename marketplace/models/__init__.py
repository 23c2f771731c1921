"""Models of the marketplace app, one module per area; this package re-exports them."""

from marketplace.models.inbox import StripeEvent

__all__ = ["StripeEvent"]
