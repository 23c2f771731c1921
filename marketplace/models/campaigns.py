"""Coupon campaigns: a code customers type, a budget held in the ledger account
`coupons:<code>`, a discount rule (a portion of the subtotal, capped per order) and an active
window. Written only by `marketplace.services.campaigns`.

What a campaign has left to spend is the ledger balance of its account, never a column here:
the ledger's no-overdraft check on that account, under its row lock, is what keeps concurrent
orders from spending the same last dollars. `funded` (the sum of fundings) is a column because
"never fund beyond the budget" is a rule the database can check.
"""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models import F, Q
from django.utils import timezone

from marketplace.models.restaurants import ASSET_REGEX, DEFAULT_ASSET, PORTION_REGEX

# Ledger address segments allow letters, digits, '_' and '-'; codes are upper case.
CODE_REGEX = r"^[A-Z0-9][A-Z0-9_-]{1,31}$"


class Campaign(models.Model):
    code = models.CharField(max_length=32, unique=True)
    name = models.CharField(max_length=200, blank=True, default="")
    asset = models.CharField(max_length=32, default=DEFAULT_ASSET)
    # The most the campaign may ever be funded with, in minor units of `asset`.
    budget = models.BigIntegerField()
    # Sum of the fundings so far (never above `budget`); increased under the row lock.
    funded = models.BigIntegerField(default=0)
    # The discount: `percent_off` of the order subtotal (a Numscript portion), at most
    # `per_order_cap`.
    percent_off = models.CharField(max_length=16, default="100%")
    per_order_cap = models.BigIntegerField()
    starts_at = models.DateTimeField(default=timezone.now)
    ends_at = models.DateTimeField(null=True, blank=True)
    paused = models.BooleanField(default=False)
    # Set once by campaign_close, never cleared: the campaign takes no order or funding, and
    # its unreserved balance went back to platform:marketing.
    closed_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        permissions = [
            ("manage_campaigns", "Can create, fund, pause, resume and close coupon campaigns"),
        ]
        db_table = "marketplace_campaign"
        ordering = ["id"]
        constraints = [
            models.CheckConstraint(condition=Q(code__regex=CODE_REGEX), name="campaign_code_valid"),
            models.CheckConstraint(
                condition=Q(asset__regex=ASSET_REGEX), name="campaign_asset_valid"
            ),
            models.CheckConstraint(condition=Q(budget__gt=0), name="campaign_budget_positive"),
            models.CheckConstraint(
                condition=Q(funded__gte=0, funded__lte=F("budget")),
                name="campaign_funded_within_budget",
            ),
            models.CheckConstraint(condition=Q(per_order_cap__gt=0), name="campaign_cap_positive"),
            models.CheckConstraint(
                condition=Q(percent_off__regex=PORTION_REGEX), name="campaign_percent_portion"
            ),
            models.CheckConstraint(
                condition=Q(ends_at__isnull=True) | Q(ends_at__gt=F("starts_at")),
                name="campaign_window_ordered",
            ),
        ]

    def __str__(self) -> str:
        return self.code

    @property
    def ledger_address(self) -> str:
        return f"coupons:{self.code}"

    def is_active(self, at: object = None) -> bool:
        now = at or timezone.now()
        return (
            not self.paused
            and self.closed_at is None
            and self.starts_at <= now  # type: ignore[operator]
            and (self.ends_at is None or now < self.ends_at)  # type: ignore[operator]
        )


class CampaignFunding(models.Model):
    """One funding of a campaign; `n` numbers them per campaign (the ledger reference is
    `campaign-fund:<code>:<n>`). Never updated after insert."""

    campaign = models.ForeignKey(Campaign, on_delete=models.PROTECT, related_name="fundings")
    n = models.PositiveIntegerField()
    amount = models.BigIntegerField()
    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    ledger_transaction_id = models.BigIntegerField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        db_table = "marketplace_campaign_funding"
        ordering = ["campaign_id", "n"]
        constraints = [
            models.UniqueConstraint(fields=["campaign", "n"], name="campaign_funding_n_uniq"),
            models.CheckConstraint(condition=Q(amount__gt=0), name="campaign_funding_positive"),
            models.CheckConstraint(condition=Q(n__gte=1), name="campaign_funding_n_from_1"),
        ]

    def __str__(self) -> str:
        return f"campaign-fund:{self.campaign.code}:{self.n}"
