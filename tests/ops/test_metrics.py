"""GET /metrics: protected, and the product gauges right after a small flow."""

from datetime import timedelta

import pytest
from django.utils import timezone
from prometheus_client.parser import text_string_to_metric_families

from config.celery import task_send
from ledger.services import PostingInput, transaction_post
from reconciliation.models import ReconciliationRun
from stripe_gateway import services as webhook_services
from stripe_gateway.models import StripeEvent
from tests.marketplace.helpers import SECRET, deliver, encode, make_event, post

pytestmark = pytest.mark.django_db

TOKEN = "metrics-test-token-0123456789"


def scrape(client) -> dict[tuple[str, tuple], float]:
    response = client.get("/metrics", HTTP_AUTHORIZATION=f"Bearer {TOKEN}")
    assert response.status_code == 200, response.content
    assert response["Content-Type"].startswith("text/plain")
    samples = {}
    for family in text_string_to_metric_families(response.content.decode()):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def delta(before: dict, after: dict, name: str, labels: tuple) -> float:
    return after.get((name, labels), 0) - before.get((name, labels), 0)


@pytest.fixture
def metrics_settings(settings):
    settings.METRICS_TOKEN = TOKEN
    settings.STRIPE_WEBHOOK_SECRETS = [SECRET]
    return settings


def test_metrics_refuse_a_missing_or_wrong_token(client, metrics_settings):
    assert client.get("/metrics").status_code == 401
    assert client.get("/metrics", HTTP_AUTHORIZATION="Bearer nope").status_code == 401


def test_metrics_are_refused_in_production_without_a_token(client, settings):
    settings.METRICS_TOKEN = ""
    settings.DJANGO_ENV = "production"
    assert client.get("/metrics").status_code == 403


def test_metrics_after_a_small_flow(
    client, metrics_settings, monkeypatch, django_capture_on_commit_callbacks, celery_eager
):
    # given: processing is not scheduled, so the events wait in the inbox
    monkeypatch.setattr(webhook_services, "event_schedule", lambda event_id: None)
    before = scrape(client)
    ok_key = ("eats_webhook_requests_total", (("outcome", "200"),))
    bad_key = ("eats_webhook_requests_total", (("outcome", "400"),))

    # when: two signed events, one forged; one ledger transaction; a reconciliation run
    with django_capture_on_commit_callbacks(execute=True):
        assert deliver(client, make_event()).status_code == 200
        assert deliver(client, make_event("charge.refunded")).status_code == 200
        forged = encode(make_event())
        assert post(client, forged, "t=1,v1=deadbeef").status_code == 400
    StripeEvent.objects.update(received_at=timezone.now() - timedelta(seconds=120))
    transaction_post(postings=[PostingInput("world", "bank:platform", "USD/2", 500)])
    task_send("ledger.seal")  # eager here; in a worker's child in production
    ReconciliationRun.objects.create(
        window_start=timezone.now() - timedelta(days=1),
        window_end=timezone.now(),
        status="succeeded",
        finished_at=timezone.now(),
        problems=2,
        totals={"USD/2": {"drift": 150, "explained": 100, "unexplained": 50}},
    )
    after = scrape(client)

    # then: request counters moved by exactly what was sent
    assert after[ok_key] - before.get(ok_key, 0) == 2
    assert after[bad_key] - before.get(bad_key, 0) == 1
    assert (
        after[("eats_webhook_request_seconds_count", ())]
        - before.get(("eats_webhook_request_seconds_count", ()), 0)
        == 3
    )
    # the ledger write, timed, and the task that sealed it
    posting = (("operation", "ledger.posting._post_prepared"),)
    assert delta(before, after, "eats_ledger_write_seconds_count", posting) == 1
    assert 0 < delta(before, after, "eats_ledger_write_seconds_sum", posting) < 5
    assert delta(before, after, "eats_ledger_writes_total", (*posting, ("outcome", "ok"))) == 1
    seal = (("task", "ledger.seal"),)
    assert delta(before, after, "eats_celery_tasks_total", (("outcome", "success"), *seal)) == 1
    assert delta(before, after, "eats_celery_task_seconds_count", seal) == 1
    assert 0 < delta(before, after, "eats_celery_task_seconds_sum", seal) < 5
    # inbox
    assert after[("eats_stripe_events", (("status", "received"),))] == 2
    assert after[("eats_stripe_events", (("status", "processed"),))] == 0
    assert 119 <= after[("eats_stripe_events_oldest_unprocessed_age_seconds", ())] < 600
    # payouts and refunds: every state present, zero
    assert after[("eats_payouts", (("state", "submitting"),))] == 0
    assert after[("eats_payouts_oldest_in_flight_age_seconds", (("state", "submitting"),))] == 0
    assert after[("eats_refunds", (("status", "pending"),))] == 0
    # the ledger: the sealer chained the one transaction
    assert after[("eats_ledger_unsealed_transactions", ())] == 0
    assert after[("eats_ledger_sealing_lag_seconds", ())] == 0
    assert after[("eats_ledger_last_seal_timestamp_seconds", ())] > 0
    # reconciliation
    assert after[("eats_reconciliation_unexplained_drift", (("asset", "USD/2"),))] == 50
    assert after[("eats_reconciliation_problems", ())] == 2
    assert after[("eats_reconciliation_last_success_timestamp_seconds", ())] > 0
    assert ("eats_reconciliation_last_run_timestamp_seconds", (("status", "succeeded"),)) in after
    # nothing failed to compute
    assert not [k for k in after if k[0] == "eats_metrics_collect_error"]
