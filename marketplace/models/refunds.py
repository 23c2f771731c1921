"""Refunds: requested by staff, created at Stripe with an idempotency key, written to the
ledger when Stripe confirms. Written only by `marketplace.services.refunds`.

Life of a refund: `pending` (row committed with the amount claimed on the order, Stripe not
yet answered) -> `submitted` (Stripe accepted it; its `re_` id is known) -> `succeeded` (the
ledger transaction `refund:<re_id>` is written) or `failed` (Stripe refused it, or the refund
failed later and the ledger was undone by `refund-failed:<re_id>`; the claim on the order is
released either way).
"""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils import timezone

from marketplace.models.orders import Order
from marketplace.models.restaurants import ASSET_REGEX, DEFAULT_ASSET, PORTION_REGEX


class Refund(models.Model):
    class Status(models.TextChoices):
        # Above REFUNDS_APPROVAL_THRESHOLD: nothing reaches Stripe until a different user
        # with marketplace.approve_refund approves (-> pending) or rejects it (-> rejected,
        # the refundable amount is freed).
        AWAITING_APPROVAL = "awaiting_approval", "Awaiting approval"
        REJECTED = "rejected", "Rejected"
        PENDING = "pending", "Pending"
        SUBMITTED = "submitted", "Submitted"
        SUCCEEDED = "succeeded", "Succeeded"
        FAILED = "failed", "Failed"

    class Bearer(models.TextChoices):
        PLATFORM = "platform", "Platform (a loss)"
        RESTAURANT = "restaurant", "Restaurant"
        RIDER = "rider", "Rider"
        SHARED = "shared", "Shared by portions"

    class Source(models.TextChoices):
        ORDER = "order", "The order's account (before delivery)"
        PARTIES = "parties", "The bearers (after delivery)"

    order = models.ForeignKey(Order, on_delete=models.PROTECT, related_name="refunds")
    amount = models.BigIntegerField()
    asset = models.CharField(max_length=32, default=DEFAULT_ASSET)
    bearer = models.CharField(max_length=12, choices=Bearer.choices, default=Bearer.PLATFORM)
    # The shares each party bears (Numscript portions summing to exactly 1), fixed when the
    # refund is requested so that the ledger entry is the same whenever Stripe confirms.
    platform_share = models.CharField(max_length=32, default="100%")
    restaurant_share = models.CharField(max_length=32, default="0%")
    rider_share = models.CharField(max_length=32, default="0%")
    # Decided under the order's lock when requested: before delivery the money still sits in
    # the order's account; after, the bearers pay it.
    source = models.CharField(max_length=8, choices=Source.choices)
    reason = models.CharField(max_length=500, blank=True, default="")
    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    # The caller's idempotency key: the same key on the same order returns the first refund.
    request_key = models.CharField(max_length=255, blank=True, default="")
    stripe_refund_id = models.CharField(max_length=255, blank=True, default="")
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.PENDING)
    # The four-eyes decision: who approved or rejected, when, and why a rejection.
    decided_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    decided_at = models.DateTimeField(null=True, blank=True)
    decision_note = models.CharField(max_length=500, blank=True, default="")
    failure_reason = models.CharField(max_length=500, blank=True, default="")
    ledger_transaction_id = models.BigIntegerField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    succeeded_at = models.DateTimeField(null=True, blank=True)
    failed_at = models.DateTimeField(null=True, blank=True)
    # Who is calling Stripe for it right now (`common.leases`): the sweeper leaves a refund
    # alone while a live lease says its own request (or an earlier sweep) is still at it.
    lease_token = models.CharField(max_length=32, blank=True, default="")
    lease_until = models.DateTimeField(null=True, blank=True)

    class Meta:
        permissions = [
            ("request_refund", "Can request a refund"),
            ("approve_refund", "Can approve or reject a refund awaiting approval"),
        ]
        db_table = "marketplace_refund"
        ordering = ["id"]
        constraints = [
            models.CheckConstraint(condition=Q(amount__gt=0), name="refund_amount_positive"),
            models.CheckConstraint(
                condition=Q(asset__regex=ASSET_REGEX), name="refund_asset_valid"
            ),
            models.CheckConstraint(
                condition=Q(platform_share__regex=PORTION_REGEX)
                & Q(restaurant_share__regex=PORTION_REGEX)
                & Q(rider_share__regex=PORTION_REGEX),
                name="refund_shares_are_portions",
            ),
            models.CheckConstraint(
                condition=Q(stripe_refund_id="") | Q(stripe_refund_id__startswith="re_"),
                name="refund_stripe_id_is_re",
            ),
            models.CheckConstraint(
                condition=~Q(status__in=["submitted", "succeeded"]) | ~Q(stripe_refund_id=""),
                name="refund_submitted_has_stripe_id",
            ),
            models.UniqueConstraint(
                fields=["stripe_refund_id"],
                condition=~Q(stripe_refund_id=""),
                name="refund_stripe_id_uniq",
            ),
            models.CheckConstraint(
                condition=~Q(status__in=["awaiting_approval", "rejected"]) | Q(stripe_refund_id=""),
                name="refund_undecided_never_sent",
            ),
            models.UniqueConstraint(
                fields=["order", "request_key"],
                condition=~Q(request_key=""),
                name="refund_request_key_uniq",
            ),
        ]

    def __str__(self) -> str:
        return f"refund {self.pk} of order {self.order_id} ({self.status})"

    @property
    def idempotency_key(self) -> str:
        """The Stripe idempotency key: stored implicitly by the row id, before the call."""
        return f"refund:{self.pk}"
