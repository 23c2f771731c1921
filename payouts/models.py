"""Tables of the payouts app.

- `Payout`: one transfer of what the ledger owes a payee (a restaurant or a rider) to its
  Stripe connected account. Its state changes only through `payouts.services` (checked against
  `payouts.transitions.TRANSITIONS` under the row lock, and by a PostgreSQL trigger built from
  the same table). Never deleted (trigger).
- `PayoutEvent`: the audit trail, one row per transition (and per note on a terminal payout,
  such as a reversal after payment). Append-only (trigger).
- `PayoutPayee`: per payee, the sequence counter of its payouts and the row lock that
  serializes scheduling, cancelling and returning for that payee.
- `PayeeHoldChange`: who held or released a payee's payouts, when and why. Append-only.

The payee itself is referenced generically by (kind, id): `marketplace.Restaurant` or
`marketplace.Rider`. What a payout needs from it (ledger address, connected account, asset)
is snapshotted on the row when the payout is created.
"""

from __future__ import annotations

import os
import time
import uuid

from django.db import models
from django.db.models import Q
from django.utils import timezone

from payouts.transitions import IN_FLIGHT, State


def new_payout_id() -> uuid.UUID:
    """A time-ordered UUID (the UUIDv7 layout: 48-bit milliseconds, version, random), so new
    rows append to the primary-key index; globally unique, so `transfer:<id>` keys never
    collide across databases sharing a Stripe account."""
    millis = time.time_ns() // 1_000_000
    rand = int.from_bytes(os.urandom(10), "big")
    value = (millis & ((1 << 48) - 1)) << 80
    value |= 0x7 << 76  # version 7
    value |= ((rand >> 62) & 0xFFF) << 64  # rand_a (12 bits)
    value |= 0b10 << 62  # RFC 4122 variant
    value |= rand & ((1 << 62) - 1)  # rand_b (62 bits)
    return uuid.UUID(int=value)


class PayeeKind(models.TextChoices):
    RESTAURANT = "restaurant", "Restaurant"
    RIDER = "rider", "Rider"


_IN_FLIGHT_STATES = sorted(str(s) for s in IN_FLIGHT)


class PayoutPayee(models.Model):
    """The payouts app's row for one payee. Locked FOR UPDATE (first, see lock_objects.py)
    by whatever creates, cancels or returns a payout of that payee."""

    kind = models.CharField(max_length=16, choices=PayeeKind.choices)
    payee_id = models.BigIntegerField()
    address = models.CharField(max_length=255)  # the payee's ledger account, never changes
    last_seq = models.PositiveIntegerField(default=0)  # N of its latest payout
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        db_table = "payouts_payee"
        constraints = [
            models.UniqueConstraint(fields=["kind", "payee_id"], name="payouts_payee_uniq"),
        ]

    def __str__(self) -> str:
        return f"{self.kind} {self.payee_id} ({self.address})"


class Payout(models.Model):
    id = models.UUIDField(primary_key=True, default=new_payout_id, editable=False)
    payee_kind = models.CharField(max_length=16, choices=PayeeKind.choices)
    payee_id = models.BigIntegerField()
    seq = models.PositiveIntegerField()  # N: the payee's n-th payout, from 1
    # Snapshots taken at creation, never updated:
    payee_address = models.CharField(max_length=255)  # restaurants:001
    account = models.CharField(max_length=255)  # restaurants:001:payouts:003
    destination = models.CharField(max_length=255)  # the connected account, acct_...
    asset = models.CharField(max_length=32)  # USD/2
    amount = models.BigIntegerField()  # minor units of `asset`, > 0, decided under lock

    state = models.CharField(max_length=16, choices=State.choices, default=State.PENDING)
    # `transfer:<id>`: written and committed before the first Stripe call, never changed.
    idempotency_key = models.CharField(max_length=255, blank=True, default="")
    # The one Stripe transfer of this payout (I7: unique, and one payout has at most one).
    transfer_id = models.CharField(max_length=255, null=True, blank=True)  # noqa: DJ001
    # Reversed at Stripe so far (transfer.reversed), and given back to the payee on the ledger.
    amount_reversed = models.BigIntegerField(default=0)
    attempts = models.PositiveIntegerField(default=0)  # transfer create calls made
    last_error = models.TextField(blank=True, default="")
    needs_attention = models.BooleanField(default=False)  # escalated to staff

    # The driver's claim: a worker owns the payout while lease_until (database time) is ahead.
    lease_token = models.CharField(max_length=64, blank=True, default="")
    lease_until = models.DateTimeField(null=True, blank=True)
    # Set when a driver leaves the payout unresolved (Stripe's outcome unknown): the sweeper
    # re-drives it then, with a backoff growing with `attempts`. NULL: use the state's age.
    next_attempt_at = models.DateTimeField(null=True, blank=True)

    created_at = models.DateTimeField(default=timezone.now)
    state_changed_at = models.DateTimeField(default=timezone.now)
    submitting_at = models.DateTimeField(null=True, blank=True)  # key stored, first call
    submitted_at = models.DateTimeField(null=True, blank=True)  # transfer id recorded
    paid_at = models.DateTimeField(null=True, blank=True)
    returned_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        db_table = "payouts_payout"
        ordering = ["-created_at"]
        # Money-moving staff operations (hold, release, cancel, retry, run a pass) need this
        # permission, not just `is_staff`.
        permissions = [("manage_payouts", "Can hold payees, cancel, retry and run payouts")]
        indexes = [
            # The sweeper: non-terminal payouts by age.
            models.Index(
                fields=["state", "state_changed_at"],
                name="payout_in_flight_idx",
                condition=Q(state__in=_IN_FLIGHT_STATES),
            ),
            models.Index(fields=["created_at"], name="payout_created_idx"),
        ]
        constraints = [
            models.CheckConstraint(condition=Q(amount__gt=0), name="payout_amount_gt_0"),
            models.CheckConstraint(condition=Q(seq__gte=1), name="payout_seq_gte_1"),
            models.CheckConstraint(
                condition=Q(amount_reversed__gte=0) & Q(amount_reversed__lte=models.F("amount")),
                name="payout_amount_reversed_range",
            ),
            models.CheckConstraint(
                condition=Q(state__in=[str(s) for s in State]), name="payout_state_valid"
            ),
            models.UniqueConstraint(
                fields=["payee_kind", "payee_id", "seq"], name="payout_payee_seq_uniq"
            ),
            # Two schedulers racing for one payee: the second insert fails here.
            models.UniqueConstraint(
                fields=["payee_kind", "payee_id"],
                condition=Q(state__in=_IN_FLIGHT_STATES),
                name="payout_one_in_flight_per_payee",
            ),
            models.UniqueConstraint(
                fields=["transfer_id"],
                condition=Q(transfer_id__isnull=False),
                name="payout_transfer_uniq",
            ),
            models.CheckConstraint(
                condition=Q(transfer_id__isnull=True) | Q(transfer_id__startswith="tr_"),
                name="payout_transfer_is_tr",
            ),
            # Stripe may have been called: the key was stored first.
            models.CheckConstraint(
                condition=~Q(state__in=["submitting", "submitted", "paid"])
                | ~Q(idempotency_key=""),
                name="payout_key_before_call",
            ),
            # I12: paid (and submitted) imply a Stripe transfer id.
            models.CheckConstraint(
                condition=~Q(state__in=["submitted", "paid"]) | Q(transfer_id__isnull=False),
                name="payout_paid_has_transfer",
            ),
        ]

    def __str__(self) -> str:
        return f"payout {self.id} {self.account} {self.asset} {self.amount} ({self.state})"

    @property
    def payee_ref(self) -> str:
        return f"{self.payee_kind}:{self.payee_id}"


class PayoutEvent(models.Model):
    """One audit row per transition (from_state -> to_state), written in the same database
    transaction as the change. `from_state` is "" for the creation; from == to marks a note on
    a payout whose state did not change (e.g. a reversal after it was paid). Append-only."""

    id = models.BigAutoField(primary_key=True)
    payout = models.ForeignKey(
        Payout, on_delete=models.PROTECT, related_name="events", db_index=False
    )  # indexed by (payout, id) below
    from_state = models.CharField(max_length=16, blank=True, default="")
    to_state = models.CharField(max_length=16)
    why = models.TextField()
    actor = models.CharField(max_length=200)  # "scheduler", "task:<id>", "staff:<user>", ...
    data = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        db_table = "payouts_event"
        ordering = ["payout", "id"]
        indexes = [models.Index(fields=["payout", "id"], name="payout_event_payout_idx")]

    def __str__(self) -> str:
        return f"{self.payout_id}: {self.from_state or '-'} -> {self.to_state}"


class PayeeHoldChange(models.Model):
    """A staff (or automatic) hold or release of a payee's payouts. Append-only."""

    id = models.BigAutoField(primary_key=True)
    payee_kind = models.CharField(max_length=16, choices=PayeeKind.choices)
    payee_id = models.BigIntegerField()
    on_hold = models.BooleanField()
    reason = models.TextField()
    actor = models.CharField(max_length=200)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        db_table = "payouts_hold_change"
        ordering = ["-id"]
        indexes = [models.Index(fields=["payee_kind", "payee_id"], name="payouts_hold_payee_idx")]

    def __str__(self) -> str:
        return f"{'hold' if self.on_hold else 'release'} {self.payee_kind} {self.payee_id}"
