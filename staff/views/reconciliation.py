"""Reconciliation: the runs (window, result, counts per outcome, unexplained drift) with the
chart of the last 90 nights, one run with its items filtered by outcome (keyset by id; each
links to its ledger transactions and names its Stripe balance transactions), CSV, "apply safe
repairs" (`reconciliation.apply_repairs`: previewed, confirmed, applied once even under
concurrent clicks) and re-run (`reconciliation.run_reconciliation`)."""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest, HttpResponse, HttpResponseBase, StreamingHttpResponse
from django.shortcuts import render
from django.urls import reverse

from config.errors import ApplicationError
from reconciliation.delivery import runs_chart_points, runs_chart_svg
from reconciliation.matching import PROBLEMS, Outcome
from reconciliation.models import ReconciliationItem, ReconciliationRun
from reconciliation.selectors import items_csv_lines, outcome_label
from staff.finance_services import (
    NothingToRepair,
    pending_repairs,
    reconciliation_rerun,
    repairs_apply_once,
)
from staff.views.base import StaffView, int_param, not_found
from staff.views.finance_base import ConfirmedActionView

VIEW = ("reconciliation.view_reconciliationrun", "reconciliation.view_reconciliationitem")
PAGE = 50


def _run(run_id: int) -> ReconciliationRun | None:
    return ReconciliationRun.objects.filter(pk=run_id).first() if run_id < 2**63 else None


def _unexplained(run: ReconciliationRun) -> dict[str, int]:
    return {a: int(t.get("unexplained", 0) or 0) for a, t in (run.totals or {}).items()}


def _summary(run: ReconciliationRun) -> dict[str, Any]:
    """`run_summary` without its count of pending safe repairs over every item: safe repairs
    are only offered on problem items, so counting those reads the (run, outcome) partial
    index of non-matched items instead of a million matched rows."""
    from reconciliation import selectors as recon_selectors

    counts = {str(o): int((run.counts or {}).get(str(o), 0)) for o in Outcome}
    pending = ReconciliationItem.objects.filter(
        run=run,
        outcome__in=[str(p) for p in PROBLEMS],
        safe=True,
        repair_status=ReconciliationItem.RepairStatus.PENDING,
    ).count()
    return {
        "counts": counts,
        "safe_repairs_pending": pending,
        "clean": run.status == ReconciliationRun.Status.SUCCEEDED
        and run.problems == 0
        and not any(_unexplained(run).values()),
        "label": recon_selectors.outcome_label,
    }


class RunsView(StaffView):
    permissions = VIEW

    def get(self, request: HttpRequest) -> HttpResponse:
        before = int_param(request.GET.get("before"))
        qs = ReconciliationRun.objects.order_by("-id")
        if before:
            qs = qs.filter(pk__lt=before)
        runs = list(qs[: PAGE + 1])
        rows = [
            {
                "run": r,
                "counts": {o: n for o, n in (r.counts or {}).items() if n},
                "unexplained": _unexplained(r),
                "clean": r.status == ReconciliationRun.Status.SUCCEEDED
                and r.problems == 0
                and not any(_unexplained(r).values()),
            }
            for r in runs[:PAGE]
        ]
        points = runs_chart_points(limit=90)
        return render(
            request,
            "staff/reconciliation.html",
            {
                "rows": rows,
                "next_before": runs[PAGE - 1].pk if len(runs) > PAGE else None,
                "chart": runs_chart_svg(points=points) if points else "",
                "points": points,
            },
        )


class RunView(StaffView):
    permissions = VIEW

    def get(self, request: HttpRequest, run_id: int) -> HttpResponseBase:
        run = _run(run_id)
        if run is None:
            return not_found(request, f"There is no reconciliation run {run_id}.")
        outcome = str(request.GET.get("outcome", ""))
        valid = {str(o) for o in Outcome} | {"problems"}
        error = ""
        if outcome and outcome not in valid:
            error = f"“{outcome[:40]}” is not an outcome; showing the items needing attention."
            outcome = "problems"
        if not outcome:
            outcome = "problems" if run.problems else ""
        if request.GET.get("format") == "csv":
            lines = items_csv_lines(
                run=run,
                outcome=outcome if outcome not in ("", "problems") else None,
                problems_only=outcome == "problems",
            )
            response = StreamingHttpResponse(lines, content_type="text/csv; charset=utf-8")
            response["Content-Disposition"] = (
                f'attachment; filename="reconciliation-run-{run.pk}.csv"'
            )
            return response
        items = ReconciliationItem.objects.filter(run=run)
        if outcome == "problems":
            items = items.filter(outcome__in=[str(p) for p in PROBLEMS])
        elif outcome:
            items = items.filter(outcome=outcome)
        after = int_param(request.GET.get("after"))
        if after:
            items = items.filter(pk__gt=after)
        page = list(items.order_by("id")[: PAGE + 1])
        summary = _summary(run)
        return render(
            request,
            "staff/reconciliation_run.html",
            {
                "run": run,
                "summary": summary,
                "outcome": outcome,
                "outcomes": [
                    (str(o), outcome_label(str(o)), summary["counts"][str(o)]) for o in Outcome
                ],
                "items": [
                    {
                        "item": i,
                        "ledger_ids": [t for t in i.ledger_transactions.split(",") if t],
                        "bt_ids": [t for t in i.balance_transactions.split(",") if t],
                    }
                    for i in page[:PAGE]
                ],
                "next_after": page[PAGE - 1].pk if len(page) > PAGE else None,
                "error": error,
                "can_repair": request.user.has_perm("reconciliation.apply_repairs"),
                "can_run": request.user.has_perm("reconciliation.run_reconciliation"),
            },
            status=400 if error else 200,
        )


class RepairsView(ConfirmedActionView):
    permissions = (*VIEW, "reconciliation.apply_repairs")
    verb = "apply repairs"
    reason_required = False

    def target(self, request: HttpRequest, **kwargs: Any) -> ReconciliationRun | None:
        return _run(kwargs["run_id"])

    def title(self, obj: Any) -> str:
        return f"Apply the safe repairs of run {obj.pk}"

    def purpose(self, obj: Any) -> str:
        return f"reconciliation.repairs:{obj.pk}"

    def done_url(self, obj: Any) -> str:
        return reverse("staff:reconciliation-run", args=[obj.pk])

    def preview(self, request: HttpRequest, obj: Any, reason: str) -> dict[str, Any]:
        pending = pending_repairs(run=obj, limit=200)
        if not pending:
            raise NothingToRepair(
                f"Run {obj.pk} has no safe repair pending: nothing to apply (already applied?)."
            )
        return {
            "summary": f"Apply {len(pending)}{'+' if len(pending) == 200 else ''} safe "
            "repair(s). Each is an idempotent ledger write or event replay; the run's "
            "counters and the audit trail record them. Re-run the window afterwards to "
            "see it clean.",
            "lines": [
                f"{i.outcome} {i.stripe_object or i.key}: {(i.repair or {}).get('action')} — "
                f"{i.suggested_action[:200]}"
                for i in pending
            ],
        }

    def perform(self, request: HttpRequest, obj: Any, reason: str) -> str:
        report = repairs_apply_once(run_id=obj.pk, actor=request.user)
        return f"Repairs of run {obj.pk}: {report.applied} applied, {report.failed} failed."


class RerunView(ConfirmedActionView):
    permissions = (*VIEW, "reconciliation.run_reconciliation")
    verb = "re-run"
    reason_required = False

    def target(self, request: HttpRequest, **kwargs: Any) -> ReconciliationRun | None:
        return _run(kwargs["run_id"])

    def title(self, obj: Any) -> str:
        return f"Re-run the reconciliation of run {obj.pk}'s window"

    def purpose(self, obj: Any) -> str:
        return f"reconciliation.rerun:{obj.pk}"

    def done_url(self, obj: Any) -> str:
        return reverse("staff:reconciliation-run", args=[obj.pk])

    def preview(self, request: HttpRequest, obj: Any, reason: str) -> dict[str, Any]:
        return {
            "summary": f"Import Stripe's balance transactions of [{obj.window_start:%Y-%m-%d %H:%M}, "
            f"{obj.window_end:%Y-%m-%d %H:%M}) UTC again and match them: a new run linked to "
            f"run {obj.pk}. Missing Stripe fees are booked on the way.",
        }

    def perform(self, request: HttpRequest, obj: Any, reason: str) -> str:
        try:
            new = reconciliation_rerun(run_id=obj.pk, actor=request.user)
        except ApplicationError:
            raise
        except Exception as exc:  # Stripe unreachable...: the failed run is stored
            raise ApplicationError(f"The run failed: {exc}", code="run_failed") from exc
        self.result_url = reverse("staff:reconciliation-run", args=[new.pk])
        return (
            f"Run {new.pk}: {new.status}, {new.problems} item(s) need attention."
            if new.problems
            else f"Run {new.pk}: {new.status}, clean."
        )
