"""The platform's own money movements: top-ups of the Stripe balance from the bank.
Written only by `marketplace.services.treasury`."""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils import timezone

from marketplace.models.restaurants import ASSET_REGEX, DEFAULT_ASSET


class Topup(models.Model):
    class Status(models.TextChoices):
        PENDING = "pending", "Pending"  # row committed, Stripe not yet answered
        SUBMITTED = "submitted", "Submitted"  # Stripe created it (tu_ known)
        SUCCEEDED = "succeeded", "Succeeded"  # the ledger transaction topup:<tu_id> is written
        FAILED = "failed", "Failed"
        # Stripe took the money back (topup.reversed): topup-reversed:<tu_id> is written
        REVERSED = "reversed", "Reversed"

    amount = models.BigIntegerField()
    asset = models.CharField(max_length=32, default=DEFAULT_ASSET)
    description = models.CharField(max_length=255, blank=True, default="")
    stripe_topup_id = models.CharField(max_length=255, blank=True, default="")
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.PENDING)
    failure_reason = models.CharField(max_length=500, blank=True, default="")
    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        permissions = [
            ("create_topup", "Can top up the platform's Stripe balance"),
        ]
        db_table = "marketplace_topup"
        ordering = ["id"]
        constraints = [
            models.CheckConstraint(condition=Q(amount__gt=0), name="topup_amount_positive"),
            models.CheckConstraint(condition=Q(asset__regex=ASSET_REGEX), name="topup_asset_valid"),
            models.CheckConstraint(
                condition=Q(stripe_topup_id="") | Q(stripe_topup_id__startswith="tu_"),
                name="topup_stripe_id_is_tu",
            ),
            models.UniqueConstraint(
                fields=["stripe_topup_id"],
                condition=~Q(stripe_topup_id=""),
                name="topup_stripe_id_uniq",
            ),
        ]

    def __str__(self) -> str:
        return f"topup {self.pk} ({self.status})"

    @property
    def idempotency_key(self) -> str:
        return f"topup:{self.pk}"
