"""The nightly report, delivered: one e-mail per run to RECONCILIATION_REPORT_RECIPIENTS,
through Django's e-mail framework (EMAIL_BACKEND: SMTP in production, a file or console
backend in development and the demo), with an HTML body a finance person reads in a minute
(result, totals, drift explained / unexplained, the items needing a human, a small chart of
the last nights, the link to the run's page), a plain-text alternative, and the run's CSV
attached.

Sending never fails a run: the task that sends (`reconciliation.report_send`) runs after the
run is stored and retries on its own. Extra sections (e.g. the invoicing check, composed
above this app because reconciliation may not import invoicing) arrive as plain data:
`[{"title": ..., "ok": bool, "lines": [...]}]`.

Imports only reconciliation's own modules (and pygal). Its templates are in the project's
templates/reconciliation/ (found whatever apps a test makes available)."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

import pygal
from django.core.mail import EmailMultiAlternatives
from django.template.loader import render_to_string

from reconciliation import conf
from reconciliation.matching import PROBLEMS, format_money
from reconciliation.models import ReconciliationItem, ReconciliationRun
from reconciliation.selectors import items_csv_lines, outcome_label, run_summary

logger = logging.getLogger(__name__)

HUMAN_ITEMS = 20  # items needing a human listed in the e-mail; the CSV has them all

# --- the chart (shared with the staff dashboard's reconciliation page) ---------------------


def runs_chart_points(
    *, limit: int = 90, up_to_run: int | None = None
) -> list[tuple[str, int, int, float]]:
    """Per finished run, oldest first (the last `limit` runs): its window's day, matched
    items, problem items, unexplained drift in major units (summed over assets). Reads the
    runs' stored counts and totals: `limit` small rows, whatever the number of items."""
    qs = ReconciliationRun.objects.exclude(status=ReconciliationRun.Status.RUNNING)
    if up_to_run is not None:
        qs = qs.filter(pk__lte=up_to_run)
    rows = list(qs.order_by("-id").values("window_start", "counts", "totals")[:limit])
    points = []
    for row in reversed(rows):
        counts = row["counts"] or {}
        problems = sum(int(counts.get(str(o), 0)) for o in PROBLEMS)
        drift = 0.0
        for asset, t in (row["totals"] or {}).items():
            scale = int(asset.split("/")[1]) if "/" in asset else 0
            drift += abs(int(t.get("unexplained", 0) or 0)) / 10**scale
        points.append(
            (row["window_start"].strftime("%m-%d"), int(counts.get("matched", 0)), problems, drift)
        )
    return points


def runs_chart_svg(
    *,
    points: Sequence[tuple[str, int, int, float]],
    width: int = 900,
    height: int = 280,
    title: str = "Reconciliation per night: matched / mismatched items, unexplained drift",
) -> str:
    """A pygal line chart as an `<svg>` element (no script: pygal's tooltip JS is a CDN URL,
    and neither the dashboard nor a mail client runs it)."""
    import re

    chart = pygal.Line(
        js=[],
        width=width,
        height=height,
        explicit_size=False,
        show_minor_x_labels=False,
        title=title,
        legend_at_bottom=True,
        dots_size=2,
        style=pygal.style.Style(
            background="transparent",
            plot_background="transparent",
            colors=("#2f9e44", "#e03131", "#f08c00"),
            font_family="system-ui, sans-serif",
        ),
    )
    labels = [p[0] for p in points]
    chart.x_labels = labels
    chart.x_labels_major = labels[:: max(1, len(labels) // 8)]
    chart.add("matched", [p[1] for p in points])
    chart.add("mismatched", [p[2] for p in points])
    chart.add("unexplained drift", [p[3] for p in points], secondary=True)
    svg = str(chart.render(is_unicode=True, disable_xml_declaration=True))
    return re.sub(r"<script\b[^>]*>.*?</script>", "", svg, flags=re.DOTALL)


# --- the message -----------------------------------------------------------------------------


def recipients() -> list[str]:
    raw = conf.get("RECONCILIATION_REPORT_RECIPIENTS") or ""
    if isinstance(raw, list | tuple):
        values = [str(v) for v in raw]
    else:
        values = str(raw).replace(";", ",").split(",")
    return [v.strip() for v in values if v.strip()]


def run_url(run: ReconciliationRun) -> str:
    base = str(conf.get("RECONCILIATION_REPORT_BASE_URL") or "").rstrip("/")
    return f"{base}/staff/reconciliation/{run.pk}/"


def report_context(
    run: ReconciliationRun, sections: Sequence[Mapping[str, Any]] = ()
) -> dict[str, Any]:
    summary = run_summary(run=run)
    human = list(
        ReconciliationItem.objects.filter(run=run, outcome__in=[str(p) for p in PROBLEMS])
        .exclude(repair_status=ReconciliationItem.RepairStatus.APPLIED)
        .order_by("id")[:HUMAN_ITEMS]
    )
    totals = [
        {
            "asset": asset,
            **{k: format_money(asset, int(v or 0)) for k, v in t.items() if isinstance(v, int)},
            "unexplained_raw": int(t.get("unexplained", 0) or 0),
        }
        for asset, t in sorted((run.totals or {}).items())
    ]
    counts = [
        (outcome_label(o), n, o in {str(p) for p in PROBLEMS})
        for o, n in summary["counts"].items()
        if n
    ]
    if not summary["clean"]:
        result = "FAILED" if run.status == ReconciliationRun.Status.FAILED else "NEEDS ATTENTION"
    else:
        result = "CLEAN"
    points = runs_chart_points(limit=30, up_to_run=run.pk)
    return {
        "run": run,
        "summary": summary,
        "result": result,
        "counts": counts,
        "totals": totals,
        "human": human,
        "human_more": max(0, run.problems - len(human)),
        "url": run_url(run),
        "chart": runs_chart_svg(points=points, width=600, height=220, title="Last nights")
        if points
        else "",
        "sections": list(sections),
        "label": outcome_label,
    }


def report_message(
    run: ReconciliationRun,
    *,
    to: Sequence[str],
    sections: Sequence[Mapping[str, Any]] = (),
) -> EmailMultiAlternatives:
    context = report_context(run, sections)
    day = run.window_start.strftime("%Y-%m-%d")
    subject = (
        f"[{context['result']}] Reconciliation of {day}: run {run.pk}, "
        f"{run.problems} item(s) need a human"
    )
    text = render_to_string("reconciliation/report_email.txt", context)
    html = render_to_string("reconciliation/report_email.html", context)
    message = EmailMultiAlternatives(
        subject=subject,
        body=text,
        from_email=str(conf.get("RECONCILIATION_REPORT_FROM")),
        to=list(to),
    )
    message.attach_alternative(html, "text/html")
    csv_text = "".join(items_csv_lines(run=run, problems_only=run_problem_rows_only(run)))
    message.attach(f"reconciliation-run-{run.pk}-{day}.csv", csv_text, "text/csv")
    return message


def run_problem_rows_only(run: ReconciliationRun) -> bool:
    """Attach every item unless there are too many for an e-mail (then the ones needing
    attention; the run page's CSV has them all)."""
    total = sum(int(v) for v in (run.counts or {}).values())
    return total > int(conf.get("RECONCILIATION_REPORT_CSV_MAX_ROWS"))


def report_send(*, run_id: int, sections: Sequence[Mapping[str, Any]] = ()) -> int:
    """Send run `run_id`'s report. Returns the number of messages sent (0: no recipients
    configured). Raises whatever the e-mail backend raises (the task retries)."""
    to = recipients()
    if not to:
        logger.info("reconciliation report of run %s: no RECONCILIATION_REPORT_RECIPIENTS", run_id)
        return 0
    run = ReconciliationRun.objects.get(pk=run_id)
    sent = report_message(run, to=to, sections=sections).send(fail_silently=False)
    logger.info("reconciliation report of run %s sent to %s", run_id, ", ".join(to))
    return int(sent)
