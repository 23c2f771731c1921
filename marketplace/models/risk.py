"""One row per (day, asset): the defaulting risk as it stood when the daily snapshot was
taken (Celery beat, `staff.risk_snapshot`), so the 90-day chart reads 90 rows instead of
replaying the ledger. Written once per day (a second snapshot of the same day replaces it:
the latest figures of that day win)."""

from __future__ import annotations

from django.db import models
from django.utils import timezone


class RiskSnapshot(models.Model):
    class Verdict(models.TextChoices):
        COVERED = "covered", "Covered"
        BELOW_THRESHOLD = "below_threshold", "Below the alert threshold"
        SHORT = "short", "Short: cannot pay everyone"
        NOTHING_OWED = "nothing_owed", "Nothing owed"

    id = models.BigAutoField(primary_key=True)
    day = models.DateField()
    asset = models.CharField(max_length=16)
    taken_at = models.DateTimeField(default=timezone.now)
    # minor units of `asset`; stripe_balance is what the ledger says is at Stripe
    stripe_balance = models.BigIntegerField()
    owed_payees = models.BigIntegerField()  # restaurants + riders (available for payout)
    owed_open_orders = models.BigIntegerField()  # customers' money held until delivery
    owed_in_flight = models.BigIntegerField()  # payouts reserved or sent, not settled
    owed_total = models.BigIntegerField()  # everything counted for risk (payments in transit too)
    coverage = models.FloatField(null=True)  # stripe_balance / owed_total; NULL: nothing owed
    threshold = models.FloatField()  # RISK_COVERAGE_ALERT_BELOW when taken
    verdict = models.CharField(max_length=20, choices=Verdict.choices)
    alerted_at = models.DateTimeField(null=True, blank=True)  # the alert e-mail went out

    class Meta:
        db_table = "marketplace_risk_snapshot"
        ordering = ["-day"]
        constraints = [
            models.UniqueConstraint(fields=["day", "asset"], name="risk_snapshot_day_asset_uniq"),
        ]

    def __str__(self) -> str:
        return f"risk {self.day} {self.asset} {self.verdict}"
