"""The daily risk snapshot: what `marketplace.selectors.risk_get` says now, stored once per
(day, asset) with its coverage ratio and verdict against RISK_COVERAGE_ALERT_BELOW."""

from __future__ import annotations

from datetime import date

from django.db import transaction
from django.utils import timezone

from marketplace import conf
from marketplace.models import RiskSnapshot
from marketplace.selectors import USD, risk_get, risk_snapshot_figures


def verdict_of(*, coverage: float | None, shortfall: int, threshold: float) -> str:
    if coverage is None:
        return RiskSnapshot.Verdict.NOTHING_OWED
    if shortfall > 0:
        return RiskSnapshot.Verdict.SHORT
    if coverage < threshold:
        return RiskSnapshot.Verdict.BELOW_THRESHOLD
    return RiskSnapshot.Verdict.COVERED


def risk_snapshot_take(*, day: date | None = None, asset: str = USD) -> RiskSnapshot:
    """Take (or retake) the snapshot of `day` (today UTC by default). Returns the row."""
    day = day or timezone.now().date()
    risk = risk_get(asset=asset, warn=False)
    threshold = float(conf.get("RISK_COVERAGE_ALERT_BELOW"))
    figures = risk_snapshot_figures(risk)
    with transaction.atomic(durable=True):
        snapshot, _ = RiskSnapshot.objects.update_or_create(
            day=day,
            asset=asset,
            defaults={
                "taken_at": timezone.now(),
                "stripe_balance": risk.stripe_balance,
                **figures,
                "coverage": risk.coverage,
                "threshold": threshold,
                "verdict": verdict_of(
                    coverage=risk.coverage, shortfall=risk.shortfall, threshold=threshold
                ),
            },
        )
    return snapshot


def risk_snapshot_alerted(*, snapshot: RiskSnapshot) -> None:
    RiskSnapshot.objects.filter(pk=snapshot.pk).update(alerted_at=timezone.now())
