"""The Stripe webhook inbox: one row per Stripe event id, whatever the number of deliveries.

The row is the source of truth for processing (Celery messages can be lost): `status` plus
`next_attempt_at` tell the sweeper what to re-drive. A row is written by the webhook view or
`stripe_events sync` (insert-or-nothing) and afterwards only by `stripe_gateway.services`.
"""

from django.db import models
from django.db.models import Q
from django.utils import timezone


class StripeEvent(models.Model):
    class Status(models.TextChoices):
        RECEIVED = "received", "Received"  # stored, processing scheduled
        PROCESSING = "processing", "Processing"  # claimed; next_attempt_at is the lease expiry
        PROCESSED = "processed", "Processed"  # handler committed (terminal)
        FAILED = "failed", "Failed"  # handler raised; retried at next_attempt_at, or gave up
        IGNORED = "ignored", "Ignored"  # no handler for the type, or not ours (terminal)
        DEFERRED = "deferred", "Deferred"  # handler asked to retry later (out-of-order event)

    # Stripe's event id; the unique constraint is what makes a duplicate delivery a no-op.
    stripe_id = models.CharField(max_length=255, unique=True)
    type = models.CharField(max_length=255)
    livemode = models.BooleanField(default=False)
    account = models.CharField(max_length=255, blank=True, default="")  # Connect: acct_...
    api_version = models.CharField(max_length=64, blank=True, default="")
    created = models.DateTimeField(help_text="Stripe's event creation time")
    payload = models.JSONField(help_text="The event as Stripe sent it; never updated")

    status = models.CharField(max_length=16, choices=Status.choices, default=Status.RECEIVED)
    attempts = models.PositiveIntegerField(default=0)  # claims so far; also the lease token
    last_error = models.TextField(blank=True, default="")
    received_at = models.DateTimeField(default=timezone.now)
    processed_at = models.DateTimeField(null=True, blank=True)
    # When the sweeper may (re-)drive this row; NULL once terminal (processed, ignored, or
    # failed for good). While `processing` it is the lease expiry.
    next_attempt_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        # The table predates this app (it moved from marketplace): see migrations/0001.
        db_table = "marketplace_stripe_event"
        ordering = ["-received_at"]
        verbose_name = "Stripe event"
        indexes = [
            # The sweeper: "what is due", only over rows still in flight.
            models.Index(
                fields=["next_attempt_at"],
                name="stripe_event_due_idx",
                condition=Q(next_attempt_at__isnull=False),
            ),
            models.Index(fields=["status", "received_at"], name="stripe_event_status_idx"),
            models.Index(fields=["type", "created"], name="stripe_event_type_idx"),
        ]
        constraints = [
            models.CheckConstraint(
                condition=Q(stripe_id__startswith="evt_"), name="stripe_event_id_is_evt"
            ),
            models.CheckConstraint(
                condition=Q(status__in=["processed", "ignored"], next_attempt_at__isnull=True)
                | ~Q(status__in=["processed", "ignored"]),
                name="stripe_event_terminal_not_due",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.stripe_id} {self.type} ({self.status})"

    @property
    def data_object(self) -> dict:
        """`payload["data"]["object"]`: the Stripe object the event describes (a hint)."""
        return self.payload["data"]["object"]
