"""Tables of the reconciliation app.

- `StripeBalanceTransaction`: what Stripe said, one row per `txn_` id. Written only by the
  import (insert, or update when Stripe's copy changed: `status` pending -> available); a
  re-import of the same data writes nothing.
- `ReconciliationRun`: one matching of one window, with its totals. A run is never redone in
  place: running the same window again makes a new run linked to the previous one, whose
  `changes` say what moved.
- `ReconciliationItem`: one key (Stripe source object, asset) of a run, with both sides'
  figures, the outcome, the suggested action and the state of its repair. Inserted by the
  matcher's single INSERT ... SELECT; afterwards only its suggestion and repair fields change.

Amounts are integers in minor units of `asset` (`USD/2`), in Stripe's sign: positive = money
into our Stripe balance. `ledger_net` is therefore MINUS the ledger's input - output on
`stripe:balance`, so a matched item has `ledger_net == stripe_net`.
"""

from __future__ import annotations

from django.db import models
from django.db.models import F, Q
from django.utils import timezone

from reconciliation.matching import OUTCOME_LABELS, Outcome

OUTCOME_CHOICES = [(o.value, OUTCOME_LABELS[o]) for o in Outcome]


class StripeBalanceTransaction(models.Model):
    """A Stripe balance transaction as imported. Never deleted."""

    id = models.CharField(primary_key=True, max_length=255)  # txn_...
    source_id = models.CharField(max_length=255, null=True, blank=True)  # noqa: DJ001
    # What the ledger's `stripe_object` must say: the source id, or the txn id itself when
    # Stripe gives no source (e.g. a standalone Stripe fee).
    source_key = models.CharField(max_length=255)
    source_type = models.CharField(max_length=64, blank=True, default="")  # charge, refund...
    type = models.CharField(max_length=64)
    reporting_category = models.CharField(max_length=64)
    amount = models.BigIntegerField()
    fee = models.BigIntegerField()
    net = models.BigIntegerField()
    currency = models.CharField(max_length=8)  # Stripe's, lowercase
    asset = models.CharField(max_length=16)  # ours: USD/2, JPY
    status = models.CharField(max_length=16)  # pending | available
    created = models.DateTimeField()
    available_on = models.DateTimeField()
    raw = models.JSONField()  # as Stripe sent it, `source` collapsed to its id
    source_object = models.JSONField(null=True, blank=True)  # the expanded source, as imported
    imported_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(null=True, blank=True)  # last time Stripe's copy changed

    class Meta:
        db_table = "reconciliation_balance_transaction"
        verbose_name = "Stripe balance transaction"
        ordering = ["-created", "id"]
        indexes = [
            models.Index(fields=["created"], name="recon_bt_created"),
            models.Index(fields=["source_key", "asset"], name="recon_bt_source"),
        ]
        constraints = [
            models.CheckConstraint(condition=Q(id__startswith="txn_"), name="recon_bt_id_is_txn"),
        ]

    def __str__(self) -> str:
        return f"{self.id} {self.reporting_category} {self.net} {self.currency}"


class ReconciliationRun(models.Model):
    class Status(models.TextChoices):
        RUNNING = "running", "Running"
        SUCCEEDED = "succeeded", "Succeeded"
        FAILED = "failed", "Failed"

    id = models.BigAutoField(primary_key=True)
    window_start = models.DateTimeField()  # balance transactions created in [start, end)
    window_end = models.DateTimeField()
    trigger = models.CharField(max_length=32, default="command")  # command, beat, admin, demo...
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.RUNNING)
    started_at = models.DateTimeField(default=timezone.now)
    finished_at = models.DateTimeField(null=True, blank=True)
    grace_seconds = models.PositiveIntegerField(default=0)
    # The latest earlier run of the same window: `changes` compares against it.
    previous_run = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    imported = models.JSONField(default=dict)  # {"seen", "created", "updated", "unchanged"}
    counts = models.JSONField(default=dict)  # {outcome: items}
    # {outcome: {asset: {"items", "stripe_net", "ledger_net", "difference"}}}
    amounts = models.JSONField(default=dict)
    # {asset: {"stripe_available", "stripe_pending", "stripe_total", "ledger", "drift",
    #          "explained", "unexplained"}}; drift = ledger - stripe, in Stripe's sign
    totals = models.JSONField(default=dict)
    changes = models.JSONField(default=dict)  # against previous_run
    repairs = models.JSONField(default=dict)  # {"fees_booked": n, "applied": n, "failed": n}
    problems = models.PositiveIntegerField(default=0)  # items needing action
    match_seconds = models.FloatField(null=True, blank=True)
    error = models.TextField(blank=True, default="")

    class Meta:
        permissions = [
            ("run_reconciliation", "Can run a reconciliation (it books missing fees)"),
            ("apply_repairs", "Can apply a reconciliation run's safe repairs"),
        ]
        db_table = "reconciliation_run"
        ordering = ["-id"]
        indexes = [models.Index(fields=["window_start", "window_end"], name="recon_run_window")]
        constraints = [
            models.CheckConstraint(
                condition=Q(window_end__gt=F("window_start")), name="recon_run_window_not_empty"
            ),
        ]

    def __str__(self) -> str:
        return (
            f"run {self.pk} [{self.window_start:%Y-%m-%d %H:%M}, {self.window_end:%Y-%m-%d %H:%M})"
        )


class ReconciliationItem(models.Model):
    class RepairStatus(models.TextChoices):
        NONE = "none", "No repair"  # nothing to do, or nothing automatic to offer
        PENDING = "pending", "Pending"  # a safe repair is offered, not applied yet
        APPLIED = "applied", "Applied"
        FAILED = "failed", "Failed"

    id = models.BigAutoField(primary_key=True)
    run = models.ForeignKey(ReconciliationRun, on_delete=models.PROTECT, related_name="items")
    # (run, key, asset) is unique by construction: the matcher's single INSERT ... SELECT
    # groups by exactly that, and nothing else inserts items. It is deliberately not a unique
    # index: at a million items per night, maintaining a random-order text B-tree doubles the
    # insert time (see reconciliation/benchmarks.py), and nothing looks items up by key.
    # The Stripe source object, or "#<ledger transaction id>" for a ledger movement on
    # stripe:balance that names no Stripe object.
    key = models.CharField(max_length=255)
    stripe_object = models.CharField(max_length=255, null=True, blank=True)  # noqa: DJ001
    asset = models.CharField(max_length=16)
    outcome = models.CharField(max_length=32, choices=OUTCOME_CHOICES)
    source_type = models.CharField(max_length=64, blank=True, default="")
    categories = models.CharField(max_length=255, blank=True, default="")  # comma-separated
    stripe_amount = models.BigIntegerField(default=0)
    stripe_fee = models.BigIntegerField(default=0)
    stripe_net = models.BigIntegerField(default=0)
    ledger_net = models.BigIntegerField(default=0)  # Stripe's sign (see module doc)
    ledger_fee = models.BigIntegerField(default=0)
    difference = models.BigIntegerField(default=0)  # ledger_net - stripe_net
    balance_transaction_count = models.IntegerField(default=0)
    ledger_transaction_count = models.IntegerField(default=0)
    balance_transactions = models.TextField(blank=True, default="")  # txn ids, comma-separated
    ledger_transactions = models.TextField(blank=True, default="")  # ledger ids, comma-separated
    occurred_at = models.DateTimeField(null=True, blank=True)  # first bt, else first ledger tx
    suggested_action = models.TextField(blank=True, default="")
    # {"action": "book_fee" | "replay_event" | "revert_duplicates", ...parameters}
    repair = models.JSONField(null=True, blank=True)
    safe = models.BooleanField(default=False)  # the repair may be applied without review
    repair_status = models.CharField(
        max_length=16, choices=RepairStatus.choices, default=RepairStatus.NONE
    )
    repair_note = models.TextField(blank=True, default="")
    # The outcome in the previous run of the same window, only where it differs (NULL:
    # unchanged, or new). The run's `changes` has the counts.
    previous_outcome = models.CharField(max_length=32, null=True, blank=True)  # noqa: DJ001

    class Meta:
        db_table = "reconciliation_item"
        ordering = ["id"]
        indexes = [
            # What needs attention, per run: small, whatever the number of matched items.
            models.Index(
                fields=["run", "outcome"],
                name="recon_item_run_open",
                condition=~Q(outcome="matched"),
            ),
        ]

    def __str__(self) -> str:
        return f"{self.key} {self.asset} {self.outcome}"
