"""The finance pages' charts (the reconciliation chart lives in `reconciliation.delivery`,
which the nightly e-mail shares): pygal SVG rendered on the server from per-day (per-run)
figures that are already aggregated (a run's `counts`/`totals`, one risk snapshot per day), so
a chart reads at most 90 small rows whatever the size of the ledger. Same style and the same
script stripping as `staff.charts`."""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

import pygal
from pygal.style import Style

_SCRIPT = re.compile(r"<script\b[^>]*>.*?</script>", re.DOTALL)
_STYLE = Style(
    background="transparent",
    plot_background="transparent",
    foreground="#1f2933",
    foreground_strong="#1f2933",
    foreground_subtle="#9aa5b1",
    colors=("#2f9e44", "#e03131", "#f08c00", "#2f6fde"),
    font_family="system-ui, sans-serif",
)


def _render(chart: Any) -> str:
    svg = str(chart.render(is_unicode=True, disable_xml_declaration=True))
    return _SCRIPT.sub("", svg)


def risk_chart_svg(
    *, points: Sequence[tuple[str, float | None, float, float]], threshold: float
) -> str:
    """Per day: label, coverage ratio (None: nothing owed), Stripe balance and owed (major
    units, secondary axis), with the alert threshold drawn as a flat series."""
    chart = pygal.Line(
        js=[],
        style=_STYLE,
        width=900,
        height=280,
        explicit_size=False,
        show_minor_x_labels=False,
        title="Coverage: Stripe balance / owed (alert below the threshold)",
        legend_at_bottom=True,
        dots_size=2,
    )
    labels = [p[0] for p in points]
    chart.x_labels = labels
    chart.x_labels_major = labels[:: max(1, len(labels) // 8)]
    chart.add("coverage", [p[1] for p in points])
    chart.add(
        "threshold", [threshold for _ in points], show_dots=False, stroke_style={"dasharray": "4,4"}
    )
    chart.add("Stripe balance", [p[2] for p in points], secondary=True)
    chart.add("owed", [p[3] for p in points], secondary=True)
    return _render(chart)
