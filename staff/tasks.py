"""Periodic finance jobs that compose apps which may not import each other (the import
contracts keep reconciliation, invoicing and payouts apart; staff sits above them all):

- `staff.finance_nightly` (beat, RECONCILIATION_NIGHTLY_HOUR): reconcile yesterday, run the
  invoicing check, queue the report e-mail with the check as an extra section. A failed send
  is retried by `reconciliation.report_send` and never fails the run; a failed invoicing
  check is reported, not raised.
- `staff.risk_snapshot` (beat, RISK_SNAPSHOT_HOUR): store today's Stripe balance vs what is
  owed; e-mail an alert when coverage falls below RISK_COVERAGE_ALERT_BELOW."""

from __future__ import annotations

import logging
from datetime import UTC, timedelta
from typing import Any

from celery import shared_task
from django.core.mail import send_mail
from django.utils import timezone

from marketplace import conf as marketplace_conf
from marketplace.models import RiskSnapshot
from marketplace.services.risk import risk_snapshot_alerted, risk_snapshot_take
from reconciliation import conf as reconciliation_conf
from reconciliation.delivery import recipients as report_recipients
from reconciliation.models import ReconciliationRun
from reconciliation.tasks import nightly_run, report_enqueue

logger = logging.getLogger(__name__)


def invoicing_section() -> dict[str, Any]:
    """The invoicing check of yesterday's month, as a report section (never raises)."""
    from invoicing.check import invoices_check

    period = (timezone.now().astimezone(UTC).date() - timedelta(days=1)).strftime("%Y-%m")
    try:
        result = invoices_check(period=period)
    except Exception as exc:  # the report must go out whatever the check does
        logger.exception("invoicing check for the nightly report failed")
        return {"title": f"Invoicing check ({period})", "ok": False, "lines": [f"error: {exc}"]}
    lines = [result.summary(), *result.mismatches[:20]]
    if len(result.mismatches) > 20:
        lines.append(f"… and {len(result.mismatches) - 20} more (manage.py invoices check)")
    return {"title": f"Invoicing check ({period})", "ok": result.ok, "lines": lines}


@shared_task(name="staff.finance_nightly", ignore_result=True)
def finance_nightly() -> int:
    """Reconcile yesterday, check the invoices, queue the report. Returns the run id."""
    run = nightly_run(trigger="beat")
    report_enqueue(run_id=run.pk, sections=[invoicing_section()])
    if run.status == ReconciliationRun.Status.FAILED:
        raise RuntimeError(f"reconciliation run {run.pk} failed: {run.error}")
    return run.pk


def _alert_recipients() -> list[str]:
    raw = str(marketplace_conf.get("RISK_ALERT_RECIPIENTS") or "")
    listed = [v.strip() for v in raw.replace(";", ",").split(",") if v.strip()]
    return listed or report_recipients()


def risk_alert_send(snapshot: RiskSnapshot) -> bool:
    """E-mail the coverage alert of `snapshot` (once per snapshot). Returns whether it went."""
    to = _alert_recipients()
    if not to or snapshot.alerted_at is not None:
        return False
    scale = 10 ** int(snapshot.asset.split("/")[1]) if "/" in snapshot.asset else 1
    coverage = "n/a" if snapshot.coverage is None else f"{snapshot.coverage:.2f}"
    base = str(reconciliation_conf.get("RECONCILIATION_REPORT_BASE_URL")).rstrip("/")
    send_mail(
        subject=f"[RISK] Stripe balance covers {coverage} of what is owed ({snapshot.day})",
        message=(
            f"Coverage {coverage} is below the threshold {snapshot.threshold:.2f} "
            f"({snapshot.get_verdict_display()}).\n"
            f"Stripe balance: {snapshot.stripe_balance / scale:.2f} {snapshot.asset}\n"
            f"Owed: {snapshot.owed_total / scale:.2f} (payees {snapshot.owed_payees / scale:.2f}, "
            f"open orders {snapshot.owed_open_orders / scale:.2f}, payouts in flight "
            f"{snapshot.owed_in_flight / scale:.2f})\n"
            "Top up the Stripe balance before the next payouts.\n"
            f"{base}/staff/risk/\n"
        ),
        from_email=str(reconciliation_conf.get("RECONCILIATION_REPORT_FROM")),
        recipient_list=to,
    )
    risk_snapshot_alerted(snapshot=snapshot)
    return True


@shared_task(name="staff.risk_snapshot", ignore_result=True)
def risk_snapshot() -> str:
    snapshot = risk_snapshot_take()
    alert = snapshot.verdict in (RiskSnapshot.Verdict.SHORT, RiskSnapshot.Verdict.BELOW_THRESHOLD)
    if alert:
        try:
            risk_alert_send(snapshot)
        except Exception:  # the snapshot is stored; the next day's alerts again
            logger.exception("risk alert e-mail of %s failed", snapshot.day)
    return str(snapshot.verdict)
