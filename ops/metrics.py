"""Prometheus metrics.

Two kinds:

- **Product state, read from the database at scrape time** (`ProductCollector`): inbox
  backlog, payouts by state, refunds, reconciliation, the hash chain's sealing lag, the
  defaulting-risk coverage. The database is the source of truth shared by every gunicorn and
  Celery process on every machine, so these are right whichever pod is scraped, with no
  cross-process aggregation to get wrong. Each query is over an indexed status column or a
  small table; the whole collection is timed (`eats_metrics_collect_seconds`).
- **Request metrics of this process tree** (`WEBHOOK_REQUESTS`, `WEBHOOK_SECONDS`, recorded
  by `ops.middleware`): with `PROMETHEUS_MULTIPROC_DIR` set (gunicorn, see
  `ops/gunicorn_conf.py`) every worker writes its own mmap file and a scrape sums them.

Amounts are minor units of the asset named in the `asset` label.
"""

import logging
import os
import time
from collections.abc import Iterable, Iterator
from datetime import timedelta

from django.conf import settings
from django.db.models import Avg, Count, DurationField, ExpressionWrapper, F, Max, Min
from django.utils import timezone
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
    multiprocess,
)
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import REGISTRY, Collector

logger = logging.getLogger(__name__)

WEBHOOK_REQUESTS = Counter(
    "eats_webhook_requests",
    "Stripe webhook requests answered, by outcome (HTTP status class and code).",
    ["outcome"],
)
WEBHOOK_SECONDS = Histogram(
    "eats_webhook_request_seconds",
    "Time to answer a Stripe webhook request.",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
)

_UNPROCESSED = ("received", "processing", "failed", "deferred")


def _age(now, then) -> float:  # type: ignore[no-untyped-def]
    return max(0.0, (now - then).total_seconds()) if then is not None else 0.0


class ProductCollector(Collector):
    """Product gauges computed from the database when Prometheus scrapes."""

    def collect(self) -> Iterable[Metric]:
        started = time.perf_counter()
        for part in (
            self._inbox,
            self._payouts,
            self._refunds,
            self._reconciliation,
            self._sealing,
            self._risk,
        ):
            try:
                yield from part()
            except Exception:
                # One broken query must not blank the whole scrape; the error counter below
                # is what an alert watches.
                logger.exception("metrics: %s failed", part.__name__)
                err = GaugeMetricFamily(
                    "eats_metrics_collect_error",
                    "1 when a group of product metrics could not be computed.",
                    labels=["group"],
                )
                err.add_metric([part.__name__.strip("_")], 1)
                yield err
        took = GaugeMetricFamily(
            "eats_metrics_collect_seconds", "Time spent computing the product metrics."
        )
        took.add_metric([], time.perf_counter() - started)
        yield took

    def _inbox(self) -> Iterator[Metric]:
        from stripe_gateway.models import StripeEvent

        now = timezone.now()
        by_status = GaugeMetricFamily(
            "eats_stripe_events", "Stripe webhook inbox rows by status.", labels=["status"]
        )
        counts = dict(StripeEvent.objects.values_list("status").annotate(n=Count("id")).order_by())
        for status in StripeEvent.Status.values:
            by_status.add_metric([status], counts.get(status, 0))
        yield by_status
        # Failed for good (next_attempt_at NULL) is not backlog: it is counted above and
        # alerted on by its own rule.
        oldest = StripeEvent.objects.filter(
            status__in=_UNPROCESSED, next_attempt_at__isnull=False
        ).aggregate(m=Min("received_at"))["m"]
        age = GaugeMetricFamily(
            "eats_stripe_events_oldest_unprocessed_age_seconds",
            "Age of the oldest inbox event still to be processed (0 when none).",
        )
        age.add_metric([], _age(now, oldest))
        yield age
        # Processing latency by type over the last 15 minutes (received -> processed).
        since = now - timedelta(minutes=15)
        latency = GaugeMetricFamily(
            "eats_stripe_event_processing_seconds",
            "Received-to-processed time of events processed in the last 15 minutes.",
            labels=["type", "stat"],
        )
        delay = ExpressionWrapper(
            F("processed_at") - F("received_at"), output_field=DurationField()
        )
        stats = (
            StripeEvent.objects.filter(status="processed", processed_at__gte=since)
            .values("type")
            .annotate(avg=Avg(delay), max=Max(delay))
            .order_by()
        )
        for row in stats:
            latency.add_metric([row["type"], "avg"], row["avg"].total_seconds())
            latency.add_metric([row["type"], "max"], row["max"].total_seconds())
        yield latency

    def _payouts(self) -> Iterator[Metric]:
        from payouts.models import Payout
        from payouts.transitions import IN_FLIGHT, State

        now = timezone.now()
        by_state = GaugeMetricFamily("eats_payouts", "Payouts by state.", labels=["state"])
        counts = dict(Payout.objects.values_list("state").annotate(n=Count("id")).order_by())
        for state in State.values:
            by_state.add_metric([state], counts.get(state, 0))
        yield by_state
        oldest = GaugeMetricFamily(
            "eats_payouts_oldest_in_flight_age_seconds",
            "Time the oldest non-terminal payout has spent in its current state, by state.",
            labels=["state"],
        )
        rows = dict(
            Payout.objects.filter(state__in=[s.value for s in IN_FLIGHT])
            .values_list("state")
            .annotate(m=Min("state_changed_at"))
            .order_by()
        )
        for state in sorted(s.value for s in IN_FLIGHT):
            oldest.add_metric([state], _age(now, rows.get(state)))
        yield oldest
        transfers = GaugeMetricFamily(
            "eats_payout_transfers",
            "Payouts whose Stripe transfer was created (sent) or that failed.",
            labels=["result"],
        )
        transfers.add_metric(["sent"], Payout.objects.filter(transfer_id__isnull=False).count())
        transfers.add_metric(
            ["failed"], Payout.objects.filter(state__in=["failed", "returned"]).count()
        )
        yield transfers

    def _refunds(self) -> Iterator[Metric]:
        from marketplace.models import Refund

        now = timezone.now()
        by_status = GaugeMetricFamily("eats_refunds", "Refunds by status.", labels=["status"])
        counts = dict(Refund.objects.values_list("status").annotate(n=Count("id")).order_by())
        for status in Refund.Status.values:
            by_status.add_metric([status], counts.get(status, 0))
        yield by_status
        oldest = Refund.objects.filter(status__in=["pending", "submitted"]).aggregate(
            m=Min("created_at")
        )["m"]
        age = GaugeMetricFamily(
            "eats_refunds_oldest_open_age_seconds",
            "Age of the oldest refund not yet succeeded or failed (0 when none).",
        )
        age.add_metric([], _age(now, oldest))
        yield age

    def _reconciliation(self) -> Iterator[Metric]:
        from reconciliation.models import ReconciliationRun

        last = ReconciliationRun.objects.exclude(status="running").order_by("-id").first()
        ok = (
            ReconciliationRun.objects.filter(status="succeeded")
            .order_by("-id")
            .only("id", "finished_at", "totals", "problems")
            .first()
        )
        last_run = GaugeMetricFamily(
            "eats_reconciliation_last_run_timestamp_seconds",
            "When the latest finished reconciliation run ended, by its status.",
            labels=["status"],
        )
        if last is not None and last.finished_at is not None:
            last_run.add_metric([last.status], last.finished_at.timestamp())
        yield last_run
        success = GaugeMetricFamily(
            "eats_reconciliation_last_success_timestamp_seconds",
            "When the latest successful reconciliation run ended (0 if never).",
        )
        success.add_metric([], ok.finished_at.timestamp() if ok and ok.finished_at else 0)
        yield success
        problems = GaugeMetricFamily(
            "eats_reconciliation_problems",
            "Items needing action in the latest successful reconciliation run.",
        )
        problems.add_metric([], ok.problems if ok else 0)
        yield problems
        drift = GaugeMetricFamily(
            "eats_reconciliation_unexplained_drift",
            "Ledger minus Stripe balance not explained by flagged items, latest successful "
            "run, minor units of the asset.",
            labels=["asset"],
        )
        for asset, totals in sorted((ok.totals if ok else {}).items()):
            if isinstance(totals, dict) and "unexplained" in totals:
                drift.add_metric([asset], totals["unexplained"])
        yield drift

    def _sealing(self) -> Iterator[Metric]:
        from ledger.models import Seal, Transaction, Unsealed

        now = timezone.now()
        queue = GaugeMetricFamily(
            "eats_ledger_unsealed_transactions",
            "Committed ledger transactions not yet chained by the sealer.",
        )
        queue.add_metric([], Unsealed.objects.count())
        yield queue
        oldest = (
            Transaction.objects.filter(id=Unsealed.objects.aggregate(m=Min("transaction_id"))["m"])
            .values_list("inserted_at", flat=True)
            .first()
        )
        lag = GaugeMetricFamily(
            "eats_ledger_sealing_lag_seconds",
            "Age of the oldest transaction waiting to be sealed (0 when the chain is current).",
        )
        lag.add_metric([], _age(now, oldest))
        yield lag
        last = Seal.objects.order_by("-seq").values_list("sealed_at", flat=True).first()
        last_seal = GaugeMetricFamily(
            "eats_ledger_last_seal_timestamp_seconds", "When the last link was sealed."
        )
        last_seal.add_metric([], last.timestamp() if last else 0)
        yield last_seal

    def _risk(self) -> Iterator[Metric]:
        from marketplace.selectors import risk_get

        coverage = GaugeMetricFamily(
            "eats_risk_coverage_ratio",
            "The Stripe balance over everything owed (payees, open orders, payouts in "
            "flight); absent when nothing is owed.",
            labels=["asset"],
        )
        for asset in settings.METRICS_RISK_ASSETS:
            risk = risk_get(asset=asset, warn=False)
            if risk.coverage is not None:
                coverage.add_metric([asset], risk.coverage)
        yield coverage


def registry() -> CollectorRegistry:
    """The registry a scrape renders: this process's (or, under gunicorn with
    PROMETHEUS_MULTIPROC_DIR, every worker's) request metrics plus the product gauges."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        reg = CollectorRegistry()
        multiprocess.MultiProcessCollector(reg)  # type: ignore[no-untyped-call]
    else:
        reg = CollectorRegistry()
        reg.register(_ProcessMetrics())
    reg.register(ProductCollector())
    return reg


class _ProcessMetrics(Collector):
    """The default registry's metrics (this process's counters), re-exposed."""

    def collect(self) -> Iterable[Metric]:
        yield from REGISTRY.collect()


def render() -> tuple[bytes, str]:
    return generate_latest(registry()), CONTENT_TYPE_LATEST
