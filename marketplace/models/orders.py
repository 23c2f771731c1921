"""Orders: what a customer buys from a restaurant, how it is paid (a Stripe PaymentIntent)
and where it stands. Written only by `marketplace.services` (orders, payments, refunds).

The money itself lives in the ledger (`orders:<id>` while held, then the parties' accounts);
the columns here are the facts the rules need under the order's row lock: what was paid,
what refunds have claimed, which PaymentIntent and charge the order is tied to.
"""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models import F, Q
from django.utils import timezone

from marketplace.models.campaigns import Campaign
from marketplace.models.restaurants import ASSET_REGEX, DEFAULT_ASSET, Customer, Restaurant, Rider


class Order(models.Model):
    class Status(models.TextChoices):
        CREATED = "created", "Created"  # committed, no PaymentIntent yet
        PENDING_PAYMENT = "pending_payment", "Pending payment"  # PaymentIntent created
        PAYMENT_FAILED = "payment_failed", "Payment failed"  # declined; coupon released
        CANCELED = "canceled", "Canceled"  # canceled or expired; coupon released
        # The charge succeeded (the customer's money is real) but Stripe has not attached its
        # balance transaction yet (asynchronous capture): nothing is in the ledger until it
        # is known, then the payment and its fee are booked together and the order is paid.
        AWAITING_SETTLEMENT = "awaiting_settlement", "Paid, awaiting settlement"
        PAID = "paid", "Paid"  # the payment is booked in the ledger
        DELIVERED = "delivered", "Delivered"  # the split is booked

    class CouponState(models.TextChoices):
        NONE = "none", "No coupon"
        RESERVED = "reserved", "Reserved"  # orders:<id>:coupon holds the discount
        RELEASED = "released", "Released"  # given back to the campaign
        CAPTURED = "captured", "Captured"  # joined the order's money at payment

    class IntentCancel(models.TextChoices):
        """Where the PaymentIntent of a canceled order stands at Stripe."""

        NONE = "none", "Nothing to cancel"
        PENDING = "pending", "Pending"  # to cancel at Stripe (`pi-cancel:<id>`), retried
        CANCELED = "canceled", "Canceled"  # Stripe canceled it: no payment can follow
        SUCCEEDED = "succeeded", "Succeeded"  # it had succeeded: the late payment is booked
        FAILED = "failed", "Failed"  # Stripe refused for another reason: see the anomaly

    customer = models.ForeignKey(
        Customer, null=True, blank=True, on_delete=models.PROTECT, related_name="orders"
    )
    restaurant = models.ForeignKey(Restaurant, on_delete=models.PROTECT, related_name="orders")
    # Known only when a rider is assigned (at the latest at delivery).
    rider = models.ForeignKey(
        Rider, null=True, blank=True, on_delete=models.PROTECT, related_name="orders"
    )
    campaign = models.ForeignKey(
        Campaign, null=True, blank=True, on_delete=models.PROTECT, related_name="orders"
    )
    asset = models.CharField(max_length=32, default=DEFAULT_ASSET)
    subtotal = models.BigIntegerField()  # the food, owed to the restaurant less commission
    delivery_fee = models.BigIntegerField(default=0)  # owed to the rider
    discount = models.BigIntegerField(default=0)  # paid by the campaign, not the customer
    total = models.BigIntegerField()  # what the customer is charged
    payment_intent_id = models.CharField(max_length=255, blank=True, default="")
    charge_id = models.CharField(max_length=255, blank=True, default="")
    amount_paid = models.BigIntegerField(default=0)  # gross captured (the charge's amount)
    stripe_fee = models.BigIntegerField(default=0)
    # Claimed by refunds that have not failed (pending ones included): never above
    # amount_paid, increased under the order's row lock.
    amount_refunded = models.BigIntegerField(default=0)
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.CREATED)
    coupon_state = models.CharField(
        max_length=10, choices=CouponState.choices, default=CouponState.NONE
    )
    # Set to pending in the transaction that cancels an order with a PaymentIntent; resolved
    # only after that commit, by calling Stripe (never inside a transaction). The expiry pass
    # retries what is still pending, with the same idempotency key.
    payment_intent_cancel = models.CharField(
        max_length=10, choices=IntentCancel.choices, default=IntentCancel.NONE
    )
    created_at = models.DateTimeField(default=timezone.now)
    paid_at = models.DateTimeField(null=True, blank=True)
    delivered_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        permissions = [
            ("manage_orders", "Can place, assign, deliver and cancel orders"),
        ]
        db_table = "marketplace_order"
        ordering = ["id"]
        indexes = [
            models.Index(fields=["status", "created_at"], name="order_status_idx"),
            # The settlement sweeper: charges whose balance transaction is still unknown.
            models.Index(
                fields=["paid_at"],
                condition=Q(status="awaiting_settlement"),
                name="order_awaiting_settlement_idx",
            ),
            # The expiry pass: PaymentIntents still to cancel at Stripe (a handful at most).
            models.Index(
                fields=["id"],
                condition=Q(payment_intent_cancel="pending"),
                name="order_intent_cancel_idx",
            ),
        ]
        constraints = [
            models.CheckConstraint(condition=Q(asset__regex=ASSET_REGEX), name="order_asset_valid"),
            models.CheckConstraint(condition=Q(subtotal__gt=0), name="order_subtotal_positive"),
            models.CheckConstraint(
                condition=Q(delivery_fee__gte=0), name="order_delivery_fee_not_negative"
            ),
            models.CheckConstraint(
                condition=Q(discount__gte=0, discount__lte=F("subtotal")),
                name="order_discount_within_subtotal",
            ),
            models.CheckConstraint(
                condition=Q(total=F("subtotal") + F("delivery_fee") - F("discount")),
                name="order_total_adds_up",
            ),
            models.CheckConstraint(condition=Q(total__gt=0), name="order_total_positive"),
            models.CheckConstraint(
                condition=Q(discount=0, coupon_state="none")
                | Q(
                    discount__gt=0,
                    campaign__isnull=False,
                    coupon_state__in=["reserved", "released", "captured"],
                ),
                name="order_coupon_consistent",
            ),
            models.CheckConstraint(
                condition=Q(amount_paid__gte=0)
                & Q(stripe_fee__gte=0)
                & Q(amount_refunded__gte=0, amount_refunded__lte=F("amount_paid")),
                name="order_refunds_within_paid",
            ),
            models.CheckConstraint(
                condition=~Q(status__in=["awaiting_settlement", "paid", "delivered"])
                | (Q(amount_paid__gt=0) & ~Q(charge_id="")),
                name="order_paid_has_charge",
            ),
            models.CheckConstraint(
                condition=~Q(status="delivered") | Q(rider__isnull=False),
                name="order_delivered_has_rider",
            ),
            models.CheckConstraint(
                condition=Q(payment_intent_id="") | Q(payment_intent_id__startswith="pi_"),
                name="order_payment_intent_is_pi",
            ),
            models.CheckConstraint(
                condition=Q(charge_id="") | Q(charge_id__startswith="ch_"),
                name="order_charge_is_ch",
            ),
            models.CheckConstraint(
                condition=Q(payment_intent_cancel="none") | ~Q(payment_intent_id=""),
                name="order_intent_cancel_has_intent",
            ),
            models.UniqueConstraint(
                fields=["payment_intent_id"],
                condition=~Q(payment_intent_id=""),
                name="order_payment_intent_uniq",
            ),
            models.UniqueConstraint(
                fields=["charge_id"], condition=~Q(charge_id=""), name="order_charge_uniq"
            ),
        ]

    def __str__(self) -> str:
        return f"order {self.pk} ({self.status})"

    @property
    def ledger_address(self) -> str:
        return f"orders:{self.pk}"

    @property
    def coupon_hold_address(self) -> str:
        return f"orders:{self.pk}:coupon"

    @property
    def transfer_group(self) -> str:
        return f"ORDER_{self.pk}"

    @property
    def refundable(self) -> int:
        return self.amount_paid - self.amount_refunded


class OrderStatusChange(models.Model):
    """Audit trail of order status transitions (one row per change; never updated)."""

    order = models.ForeignKey(Order, on_delete=models.CASCADE, related_name="status_changes")
    from_status = models.CharField(max_length=20)
    to_status = models.CharField(max_length=20)
    actor = models.CharField(max_length=255, blank=True, default="")
    note = models.CharField(max_length=500, blank=True, default="")
    at = models.DateTimeField(default=timezone.now)

    class Meta:
        db_table = "marketplace_order_status_change"
        ordering = ["id"]

    def __str__(self) -> str:
        return f"order {self.order_id}: {self.from_status} -> {self.to_status}"


class Anomaly(models.Model):
    """Something the money flows refused to guess about and staff must look at: an event for
    an unknown order, an amount that does not match, money left in an order after a failed
    refund... One row per (kind, Stripe object): redeliveries do not add rows."""

    kind = models.CharField(max_length=64)
    stripe_object = models.CharField(max_length=255, blank=True, default="")
    stripe_event_id = models.CharField(max_length=255, blank=True, default="")
    order = models.ForeignKey(
        Order, null=True, blank=True, on_delete=models.SET_NULL, related_name="anomalies"
    )
    message = models.TextField()
    details = models.JSONField(default=dict, blank=True)
    resolved = models.BooleanField(default=False)
    resolved_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        db_table = "marketplace_anomaly"
        ordering = ["-id"]
        verbose_name_plural = "anomalies"
        constraints = [
            models.UniqueConstraint(
                fields=["kind", "stripe_object"],
                condition=~Q(stripe_object=""),
                name="anomaly_kind_object_uniq",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.kind} {self.stripe_object}"
