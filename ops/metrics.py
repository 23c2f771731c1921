"""Prometheus metrics.

Two kinds:

- **Product state, read from the database at scrape time** (`ProductCollector`): inbox
  backlog, payouts by state, refunds, reconciliation, the hash chain's sealing lag, the
  defaulting-risk coverage. The database is the source of truth shared by every gunicorn and
  Celery process on every machine, so these are right whichever pod is scraped, with no
  cross-process aggregation to get wrong. Each query is over an indexed status column or a
  small table; the whole collection is timed (`eats_metrics_collect_seconds`).
- **Event metrics of this process tree**: webhook requests (`ops.middleware`), ledger writes
  and their retries (every `ledger.retry.retry_on_conflict` service, through
  `LedgerWriteObserver`), Celery tasks by outcome and duration (`ops.apps` signals). With
  `PROMETHEUS_MULTIPROC_DIR` set every process writes its own mmap file and a scrape sums
  the directory: gunicorn's workers (`ops/gunicorn_conf.py`) for the web's `/metrics`, the
  prefork children of a Celery worker for that worker's own endpoint (`worker_serve`,
  `WORKER_METRICS_BIND`), since a web pod cannot read a worker pod's files. So Prometheus
  scrapes one web pod (product gauges, web events) and every worker pod (task and ledger
  write events: most ledger writes happen in workers); `sum()` over pods in the queries.

Amounts are minor units of the asset named in the `asset` label.
"""

import hmac
import logging
import os
import shutil
import threading
import time
from collections.abc import Iterable, Iterator
from datetime import timedelta
from socketserver import ThreadingMixIn
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from django.conf import settings
from django.db.models import Avg, Count, DurationField, ExpressionWrapper, F, Max, Min
from django.utils import timezone
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
    make_wsgi_app,
    multiprocess,
)
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import REGISTRY, Collector

logger = logging.getLogger(__name__)

# Every process imports this module (ops.apps registers the ledger and task metrics), and a
# metric without labels opens its mmap file at once: the directory must exist, whichever
# process comes first (gunicorn's master and a worker's main process also empty it).
if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
    os.makedirs(os.environ["PROMETHEUS_MULTIPROC_DIR"], exist_ok=True)

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

LEDGER_WRITE_SECONDS = Histogram(
    "eats_ledger_write_seconds",
    "Time of a ledger-writing service call (every retry_on_conflict service: attempts and "
    "backoff included), by operation. A service called inside another's transaction is "
    "timed too, as its own operation.",
    ["operation"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0),
)
LEDGER_WRITES = Counter(
    "eats_ledger_writes",
    "Ledger-writing service calls by operation and outcome: ok, busy (lock contention "
    "outlasted every retry: LedgerBusy) or error (any other exception).",
    ["operation", "outcome"],
)
LEDGER_WRITE_RETRIES = Counter(
    "eats_ledger_write_retries",
    "Attempts of a ledger-writing service retried after a deadlock (40P01), a serialization "
    "failure (40001) or a lock timeout (55P03).",
    ["operation", "sqlstate"],
)
TASK_SECONDS = Histogram(
    "eats_celery_task_seconds",
    "Run time of a Celery task (prerun to postrun, in the process that ran it), by task.",
    ["task"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0),
)
TASKS = Counter(
    "eats_celery_tasks",
    "Celery tasks run, by task and outcome (the task's state: success, failure, retry, ...).",
    ["task", "outcome"],
)


class LedgerWriteObserver:
    """ledger.retry's observer: feeds the ledger write metrics (registered by ops.apps).

    A write's two series are looked up once per (operation, outcome): `labels()` validates
    and locks on every call, 2 us of every ledger write. Both are bounded sets (the decorated
    services' names; ok, busy, error)."""

    def __init__(self) -> None:
        self._series: dict[tuple[str, str], tuple[Any, Any]] = {}

    def retried(self, operation: str, sqlstate: str) -> None:
        try:
            LEDGER_WRITE_RETRIES.labels(operation=operation, sqlstate=sqlstate).inc()
        except Exception:  # a metric must never fail a ledger write
            logger.exception("metrics: ledger retry not recorded")

    def finished(self, operation: str, seconds: float, outcome: str) -> None:
        try:
            series = self._series.get((operation, outcome))
            if series is None:
                series = self._series[(operation, outcome)] = (
                    LEDGER_WRITE_SECONDS.labels(operation=operation),
                    LEDGER_WRITES.labels(operation=operation, outcome=outcome),
                )
            series[0].observe(seconds)
            series[1].inc()
        except Exception:
            logger.exception("metrics: ledger write not recorded")


_task_started: dict[str, float] = {}


def task_started(task_id: str) -> None:
    _task_started[task_id] = time.perf_counter()


def task_finished(task_id: str, task: str, state: str | None) -> None:
    started = _task_started.pop(task_id, None)
    if started is not None:
        TASK_SECONDS.labels(task=task).observe(time.perf_counter() - started)
    TASKS.labels(task=task, outcome=(state or "unknown").lower()).inc()


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


def worker_registry() -> CollectorRegistry:
    """What a Celery worker serves: its process tree's event metrics (every prefork child's
    file under PROMETHEUS_MULTIPROC_DIR, or this process's own without one). No product
    gauges: the web's /metrics has them, computed once per scrape, not once per worker."""
    reg = CollectorRegistry()
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        multiprocess.MultiProcessCollector(reg)  # type: ignore[no-untyped-call]
    else:
        reg.register(_ProcessMetrics())
    return reg


def multiproc_dir_reset() -> None:
    """Empty PROMETHEUS_MULTIPROC_DIR at a process tree's start (gunicorn's master, a Celery
    worker's main process), before any child writes: files of a previous run would be
    summed in (and a re-used pid would continue a dead process's counters)."""
    path = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if path:
        shutil.rmtree(path, ignore_errors=True)
        os.makedirs(path, exist_ok=True)


def worker_serve(bind: str, token: str, production: bool) -> WSGIServer:
    """Serve `worker_registry()` at http://<bind>/metrics from a daemon thread of the
    worker's main process, behind the same bearer token as the web's /metrics (refused in
    production without one). Returns the server (tests shut it down)."""
    host, _, port = bind.rpartition(":")
    metrics_app = make_wsgi_app(worker_registry())

    def guarded(environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        def refuse(status: str, text: str) -> Iterable[bytes]:
            start_response(status, [("Content-Type", "text/plain")])
            return [text.encode()]

        if environ.get("PATH_INFO") != "/metrics":
            return refuse("404 Not Found", "not found\n")
        if token:
            supplied = environ.get("HTTP_AUTHORIZATION", "").removeprefix("Bearer ").strip()
            if not hmac.compare_digest(supplied.encode(), token.encode()):
                return refuse("401 Unauthorized", "unauthorized\n")
        elif production:
            return refuse("403 Forbidden", "METRICS_TOKEN is not set\n")
        return metrics_app(environ, start_response)  # type: ignore[no-any-return]

    server = make_server(
        host or "0.0.0.0",  # noqa: S104 (the pod's port; the NetworkPolicy admits monitoring)
        int(port),
        guarded,
        server_class=_ThreadingWSGIServer,
        handler_class=_QuietHandler,
    )
    threading.Thread(target=server.serve_forever, name="metrics", daemon=True).start()
    logger.info("metrics: serving the worker's metrics on %s/metrics", bind)
    return server


class _ThreadingWSGIServer(ThreadingMixIn, WSGIServer):
    daemon_threads = True


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass
