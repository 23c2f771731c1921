"""Models of the marketplace app, one module per area; this package re-exports them."""

from marketplace.models.inbox import StripeEvent
from marketplace.models.restaurants import Customer, Restaurant, Rider

__all__ = ["Customer", "Restaurant", "Rider", "StripeEvent"]
