"""The nightly report delivered (HTML + text + CSV, retried, never failing the run, with the
invoicing check) and the daily risk snapshot with its coverage alert."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from celery.exceptions import Retry
from django.core import mail
from django.utils import timezone

from marketplace.models import RiskSnapshot
from reconciliation.delivery import report_send, runs_chart_points
from reconciliation.models import ReconciliationRun
from reconciliation.services import reconciliation_run
from reconciliation.tasks import reconciliation_report_send
from tests.reconciliation.helpers import DAY, WINDOW, book_refund, stripe_bt, uid

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _settings(stripe_atomic_violations: list[str], celery_eager: None, settings: Any) -> Any:
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    settings.RECONCILIATION_REPORT_RECIPIENTS = "finance@example.com, cfo@example.com"
    settings.RECONCILIATION_REPORT_BASE_URL = "https://ops.example.com"
    settings.STRIPE_API_BASE = "http://127.0.0.1:9"
    settings.STRIPE_MAX_NETWORK_RETRIES = 0
    return settings


def _run_with_a_problem() -> ReconciliationRun:
    refund = uid("re")
    stripe_bt(refund, amount=-800, category="refund", txn=(txn := uid("txn")))
    book_refund(refund, 800, txn=txn)
    book_refund(refund, 800, txn=txn)
    return reconciliation_run(
        window_start=WINDOW[0],
        window_end=WINDOW[1],
        import_from_stripe=False,
        now=DAY + timedelta(days=5),
    )


def test_the_report_email_has_the_result_the_items_a_chart_the_link_and_the_csv() -> None:
    run = _run_with_a_problem()
    sections = [{"title": "Invoicing check (2026-03)", "ok": True, "lines": ["invoices check: OK"]}]

    assert report_send(run_id=run.pk, sections=sections) == 1

    [message] = mail.outbox
    assert message.to == ["finance@example.com", "cfo@example.com"]
    assert message.subject.startswith("[NEEDS ATTENTION] Reconciliation of 2026-03-10")
    html = message.alternatives[0][0]
    assert f"https://ops.example.com/staff/reconciliation/{run.pk}/" in html
    assert "matched_twice" in html and "Invoicing check (2026-03)" in html
    assert "<svg" in html and "<script" not in html
    [(name, content, mimetype)] = message.attachments
    assert name == f"reconciliation-run-{run.pk}-2026-03-10.csv" and mimetype == "text/csv"
    assert content.splitlines()[0].startswith("run,key,")
    assert len(content.splitlines()) == 2  # header + the one item


def test_no_recipients_sends_nothing(settings: Any) -> None:
    settings.RECONCILIATION_REPORT_RECIPIENTS = ""
    run = _run_with_a_problem()
    assert report_send(run_id=run.pk) == 0
    assert mail.outbox == []


def test_a_failed_send_is_retried_then_sent_and_never_fails_the_run(
    monkeypatch: pytest.MonkeyPatch, settings: Any
) -> None:
    settings.RECONCILIATION_REPORT_RETRIES = 2
    run = _run_with_a_problem()
    real_send = mail.EmailMultiAlternatives.send
    smtp = {"up": False}

    def send(self: Any, fail_silently: bool = False) -> int:
        if not smtp["up"]:
            raise OSError("SMTP down")
        return real_send(self, fail_silently)

    monkeypatch.setattr(mail.EmailMultiAlternatives, "send", send)

    # the first attempt fails: the task asks Celery to retry it later
    with pytest.raises(Retry) as retry:
        reconciliation_report_send.apply(args=(run.pk, []))
    assert retry.value.when == 30
    # a retry fails again: later still (backoff)
    with pytest.raises(Retry) as retry:
        reconciliation_report_send.apply(args=(run.pk, []), retries=1)
    assert retry.value.when == 60
    # the last allowed attempt still failing: logged, given up, no exception
    result = reconciliation_report_send.apply(args=(run.pk, []), retries=2)
    assert result.successful() and result.result == 0 and mail.outbox == []
    # a retry once SMTP is back sends it
    smtp["up"] = True
    assert reconciliation_report_send.apply(args=(run.pk, []), retries=1).result == 1
    assert len(mail.outbox) == 1
    run.refresh_from_db()
    assert run.status == ReconciliationRun.Status.SUCCEEDED


def test_a_broker_down_never_fails_the_nightly_run(monkeypatch: pytest.MonkeyPatch) -> None:
    from reconciliation import tasks

    def down(*args: Any, **kwargs: Any) -> None:
        raise ConnectionError("redis down")

    monkeypatch.setattr(tasks.reconciliation_report_send, "delay", down)
    run = _run_with_a_problem()
    tasks.report_enqueue(run_id=run.pk)  # logs, does not raise


def test_finance_nightly_runs_reconciles_checks_invoices_and_mails(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from reconciliation import tasks
    from staff.tasks import finance_nightly

    monkeypatch.setattr(
        tasks,
        "reconciliation_run",
        lambda **kw: reconciliation_run(**kw, import_from_stripe=False),
    )
    run_id = finance_nightly.apply().get()
    run = ReconciliationRun.objects.get(pk=run_id)
    assert run.trigger == "beat"
    assert run.window_end.date() == timezone.now().date()
    [message] = mail.outbox
    assert "Invoicing check" in message.body
    assert message.attachments[0][0].endswith(".csv")


def test_the_chart_points_come_from_the_stored_runs() -> None:
    run = _run_with_a_problem()
    points = runs_chart_points(limit=90)
    assert points[-1] == ("03-10", 0, 1, 0.0) or points[-1][0] == "03-10"
    assert len(points) <= 90
    assert run.problems == 1


def test_the_risk_snapshot_is_daily_and_alerts_below_the_threshold(settings: Any) -> None:
    from staff.tasks import risk_snapshot

    settings.RISK_COVERAGE_ALERT_BELOW = 10.0  # whatever the shared ledger holds: below
    verdict = risk_snapshot.apply().get()
    snapshot = RiskSnapshot.objects.get(day=timezone.now().date(), asset="USD/2")
    assert verdict == snapshot.verdict
    if snapshot.verdict in ("short", "below_threshold"):
        [alert] = mail.outbox
        assert alert.subject.startswith("[RISK]")
        assert snapshot.__class__.objects.get(pk=snapshot.pk).alerted_at is not None
    # a second snapshot the same day replaces the row and does not alert twice
    risk_snapshot.apply().get()
    assert RiskSnapshot.objects.filter(day=snapshot.day).count() == 1
    assert len(mail.outbox) <= 1


def test_the_risk_page_draws_the_90_day_chart() -> None:
    from tests.staff.dashboard import signed_in

    today = timezone.now().date()
    for i in range(5):
        RiskSnapshot.objects.create(
            day=today - timedelta(days=i),
            asset="USD/2",
            stripe_balance=100_00,
            owed_payees=50_00,
            owed_open_orders=10_00,
            owed_in_flight=0,
            owed_total=60_00 + i * 100_00,
            coverage=100_00 / (60_00 + i * 100_00),
            threshold=1.0,
            verdict="covered",
        )
    client, _ = signed_in("risk-fin", roles=("Finance",))
    page = client.get("/staff/risk/")
    assert page.status_code == 200
    svg = page.context["chart"]
    assert svg.startswith("<svg") and svg.count('class="dot') >= 5 * 3
