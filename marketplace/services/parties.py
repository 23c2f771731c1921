"""Onboarding restaurants and riders: a row, a ledger account with its metadata (the
restaurant's `commission` portion, read by the split template), then a Stripe Connect account
(created after the commit, with a deterministic idempotency key)."""

from __future__ import annotations

import logging
from typing import Any, TypeVar

from django.db import transaction

from audit.services import actor_label, audit_record
from ledger.services import account_metadata_set
from marketplace.models import Customer, Restaurant, Rider
from marketplace.models.restaurants import ASSET_REGEX, DEFAULT_COMMISSION
from marketplace.services.common import portion_parse
from marketplace.services.errors import InvalidInput, NotFound
from stripe_gateway.client import get_gateway

logger = logging.getLogger(__name__)

P = TypeVar("P", Restaurant, Rider)


def _name_validate(name: object) -> str:
    if not isinstance(name, str) or not name.strip() or len(name) > 200:
        raise InvalidInput("name must be a non-empty string of at most 200 characters.")
    return name.strip()


def _asset_validate(asset: object) -> str:
    import re

    if not isinstance(asset, str) or not re.match(ASSET_REGEX, asset):
        raise InvalidInput(
            f"asset must look like 'USD/2', got {asset!r}.", extra={"field": "asset"}
        )
    return asset


def restaurant_onboard(
    *,
    name: str,
    email: str = "",
    commission: str = DEFAULT_COMMISSION,
    asset: str = "USD/2",
    with_stripe_account: bool = True,
) -> Restaurant:
    """Create a restaurant, its ledger account (metadata `commission`, `kind`), then its
    Stripe connected account. Raises InvalidInput; PaymentProviderError from Stripe (the
    restaurant exists then; `payee_stripe_account_ensure` retries with the same key)."""
    commission_text = commission.strip() if isinstance(commission, str) else commission
    portion_parse(commission_text, field="commission")
    with transaction.atomic(durable=True):
        restaurant = Restaurant.objects.create(
            name=_name_validate(name),
            email=email or "",
            commission=commission_text,
            asset=_asset_validate(asset),
        )
        account_metadata_set(
            address=restaurant.ledger_address,
            metadata={"kind": "restaurant", "commission": commission_text},
        )
    if with_stripe_account:
        payee_stripe_account_ensure(payee=restaurant)
    return restaurant


def rider_onboard(
    *, name: str, email: str = "", asset: str = "USD/2", with_stripe_account: bool = True
) -> Rider:
    with transaction.atomic(durable=True):
        rider = Rider.objects.create(
            name=_name_validate(name), email=email or "", asset=_asset_validate(asset)
        )
        account_metadata_set(address=rider.ledger_address, metadata={"kind": "rider"})
    if with_stripe_account:
        payee_stripe_account_ensure(payee=rider)
    return rider


def payee_stripe_account_ensure(*, payee: P) -> P:
    """Create the payee's Express account at Stripe if it has none (no transaction open)."""
    if payee.stripe_account_id:
        return payee
    kind = payee.LEDGER_PREFIX.rstrip("s")
    account = get_gateway().account_create(
        idempotency_key=f"account:{kind}:{payee.pk}",
        email=payee.email or None,
        metadata={f"{kind}_id": str(payee.pk), "ledger_address": payee.ledger_address},
    )
    type(payee).objects.filter(pk=payee.pk, stripe_account_id="").update(
        stripe_account_id=account["id"]
    )
    payee.refresh_from_db(fields=["stripe_account_id"])
    return payee


def restaurant_commission_set(
    *, restaurant_id: int, commission: str, actor: Any = ""
) -> Restaurant:
    """Change a restaurant's commission: the column and the ledger metadata the split reads,
    together. Orders delivered afterwards use the new portion."""
    text = commission.strip() if isinstance(commission, str) else commission
    portion_parse(text, field="commission")
    with transaction.atomic(durable=True):
        restaurant = Restaurant.objects.select_for_update().filter(pk=restaurant_id).first()
        if restaurant is None:
            raise NotFound(f"Restaurant {restaurant_id} does not exist.")
        before = restaurant.commission
        restaurant.commission = text
        restaurant.save(update_fields=["commission"])
        # Informational copy for ledger readers; the split takes the column, not this.
        account_metadata_set(
            address=restaurant.ledger_address,
            metadata={"commission": text},
            actor=actor_label(actor),
        )
        audit_record(
            actor=actor,
            action="restaurant.commission",
            obj=restaurant,
            data={"from": before, "to": text},
        )
    return restaurant


def payee_hold_set(*, payee: Restaurant | Rider, on_hold: bool) -> None:
    """Staff hold on a payee's payouts (the payout scheduler skips held payees)."""
    model: type[Restaurant] | type[Rider] = type(payee)
    model.objects.filter(pk=payee.pk).update(payouts_on_hold=on_hold)
    payee.payouts_on_hold = on_hold


def customer_get_or_create(*, email: str = "", name: str = "") -> Customer | None:
    if not email and not name:
        return None
    if email:
        customer = Customer.objects.filter(email=email).order_by("id").first()
        if customer is not None:
            return customer
    return Customer.objects.create(email=email, name=name)
