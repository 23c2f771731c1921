"""The `{event type: handler}` table every app registers its Stripe event handlers into.

    from stripe_gateway.registry import DeferEvent, HandlerResult, handler_register

    @handler_register("charge.refunded")
    def charge_refunded(event: StripeEvent) -> HandlerResult | None:
        ...  # runs INSIDE the transaction that marks the event processed: DB writes only

    def fetch_refunds(event: StripeEvent) -> dict:
        # runs BEFORE that transaction, with no transaction open: Stripe calls go here
        return get_gateway().charge_retrieve(event.data_object["id"])

    @handler_register("charge.dispute.created", prepare=fetch_refunds)
    def dispute_created(event: StripeEvent, charge: dict) -> None:
        ...  # `charge` is what prepare returned

A module of handlers is imported by its app's `AppConfig.ready()`, which fills the table at
start-up (web, worker and beat alike). One handler per type; registering a second one for the
same type is a configuration error. Contract for handlers:

- idempotent on the Stripe object (key writes on `ch_`/`re_`/`dp_`/`tr_`/`txn_` ids): the same
  event can be processed again (replay, lease expiry), and several events describe one object;
- order-independent: if something the event depends on is missing, fetch it in `prepare`, or
  raise `DeferEvent("why")` to be retried later with backoff (a deferred event is retried
  while Stripe could still deliver what it waits for: until STRIPE_EVENTS_DEFER_HORIZON,
  not a fixed number of attempts);
- any other exception marks the row `failed` and it is retried with backoff until
  `STRIPE_EVENTS_MAX_ATTEMPTS`; the transaction is rolled back, so nothing is half-written;
- return None (processed) or `HandlerResult.ignored("why")` when the event is not ours;
- `prepare` may itself return a `HandlerResult` when the outcome is already settled by
  committed state it read (nothing to write: the payment the event describes is booked). Then
  no transaction is opened and the handler is not called: the row is marked with that result
  by the one lease-guarded UPDATE (left to its new owner if the lease was lost meanwhile).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from django.core.exceptions import ImproperlyConfigured

if TYPE_CHECKING:
    from stripe_gateway.models import StripeEvent

__all__ = ["HANDLERS", "DeferEvent", "HandlerResult", "Registration", "handler_register"]

Prepare = Callable[["StripeEvent"], Any]
# apply(event) without a prepare step; apply(event, prepared) with one.
Apply = Callable[..., "HandlerResult | None"]


class DeferEvent(Exception):
    """Raised by a handler (or its prepare step) to be retried later, e.g. an event that
    arrived before the one it depends on. `retry_in` (seconds) overrides the backoff."""

    def __init__(self, reason: str, *, retry_in: float | None = None):
        super().__init__(reason)
        self.reason = reason
        self.retry_in = retry_in


@dataclass(frozen=True)
class HandlerResult:
    """What a handler may return; returning None means `processed`."""

    status: Literal["processed", "ignored"] = "processed"
    note: str = ""

    @classmethod
    def ignored(cls, note: str) -> HandlerResult:
        return cls(status="ignored", note=note)

    @classmethod
    def processed(cls, note: str = "") -> HandlerResult:
        return cls(status="processed", note=note)


@dataclass(frozen=True)
class Registration:
    event_type: str
    apply: Apply
    prepare: Prepare | None = None
    # Which endpoint must receive it: the platform's (its own objects) or the Connect one
    # (connected accounts' objects, events carrying `account`). `stripe_webhooks setup`.
    connect: bool = False
    # Whether the endpoints subscribe to it (`stripe_webhooks setup`). False for an event that
    # only repeats what a subscribed one says: still handled when it comes (an endpoint set up
    # before, a replay, the emulator's catch-all URL), never asked for.
    subscribe: bool = True

    @property
    def name(self) -> str:
        return f"{self.apply.__module__}.{self.apply.__qualname__}"


# The one table, filled at import time. Read it; register through `handler_register`.
HANDLERS: dict[str, Registration] = {}


def handler_register(
    event_type: str,
    *,
    prepare: Prepare | None = None,
    connect: bool = False,
    subscribe: bool = True,
) -> Callable[[Apply], Apply]:
    """Register the decorated function as THE handler of `event_type` (see module doc).
    `connect=True`: the event is about connected accounts and comes through the Connect
    endpoint. `subscribe=False`: handled when it arrives, but not in the endpoints' event
    lists (it says nothing a subscribed event does not)."""
    if not isinstance(event_type, str) or not event_type or event_type != event_type.strip():
        raise ImproperlyConfigured(f"invalid Stripe event type {event_type!r}")

    def register(apply: Apply) -> Apply:
        registration = Registration(
            event_type=event_type,
            apply=apply,
            prepare=prepare,
            connect=connect,
            subscribe=subscribe,
        )
        existing = HANDLERS.get(event_type)
        # The same function registered again (a module imported twice) is harmless.
        if existing is not None and existing.name != registration.name:
            raise ImproperlyConfigured(
                f"{event_type!r} already has a handler ({existing.name}); "
                f"cannot also register {registration.name}"
            )
        HANDLERS[event_type] = registration
        return apply

    return register
