"""Disputes (chargebacks) on our charges, mirrored from Stripe's `charge.dispute.*` events.
Written only by `marketplace.services.disputes`."""

from __future__ import annotations

from django.db import models
from django.db.models import Q
from django.utils import timezone

from marketplace.models.orders import Order
from marketplace.models.restaurants import ASSET_REGEX, DEFAULT_ASSET


class Dispute(models.Model):
    class Bearer(models.TextChoices):
        PLATFORM = "platform", "Platform (platform:disputes)"
        RESTAURANT = "restaurant", "Restaurant"

    stripe_dispute_id = models.CharField(max_length=255, unique=True)
    order = models.ForeignKey(Order, on_delete=models.PROTECT, related_name="disputes")
    charge_id = models.CharField(max_length=255)
    amount = models.BigIntegerField()
    asset = models.CharField(max_length=32, default=DEFAULT_ASSET)
    # Who bears the disputed amount, fixed by policy when the dispute is first seen (the fee
    # is always the platform's).
    bearer = models.CharField(max_length=12, choices=Bearer.choices, default=Bearer.PLATFORM)
    status = models.CharField(max_length=32)  # Stripe's: needs_response, won, lost, ...
    reason = models.CharField(max_length=64, blank=True, default="")
    amount_withdrawn = models.BigIntegerField(default=0)
    fee = models.BigIntegerField(default=0)
    amount_reinstated = models.BigIntegerField(default=0)
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(default=timezone.now)

    class Meta:
        db_table = "marketplace_dispute"
        ordering = ["id"]
        constraints = [
            models.CheckConstraint(
                condition=Q(stripe_dispute_id__startswith="dp_")
                | Q(stripe_dispute_id__startswith="du_"),
                name="dispute_id_is_dp",
            ),
            models.CheckConstraint(condition=Q(amount__gt=0), name="dispute_amount_positive"),
            models.CheckConstraint(
                condition=Q(asset__regex=ASSET_REGEX), name="dispute_asset_valid"
            ),
            models.CheckConstraint(
                condition=Q(amount_withdrawn__gte=0, fee__gte=0, amount_reinstated__gte=0),
                name="dispute_amounts_not_negative",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.stripe_dispute_id} ({self.status})"

    @property
    def bearer_address(self) -> str:
        if self.bearer == self.Bearer.RESTAURANT:
            return self.order.restaurant.ledger_address
        return "platform:disputes"
