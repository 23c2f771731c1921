"""Risk over time: today's defaulting risk (Stripe balance vs what is owed) and the daily
snapshots of the last 90 days as a chart (90 rows; `staff.risk_snapshot` stores one a day)."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from marketplace import conf as marketplace_conf
from marketplace.selectors import USD, risk_get, risk_snapshots_list
from staff.finance_charts import risk_chart_svg
from staff.views.base import StaffView
from staff.views.finance_base import FINANCE_READ


class RiskView(StaffView):
    permissions = FINANCE_READ

    def get(self, request: HttpRequest) -> HttpResponse:
        risk = risk_get(asset=USD, warn=False)
        snapshots = risk_snapshots_list(asset=USD, days=90)
        threshold = float(marketplace_conf.get("RISK_COVERAGE_ALERT_BELOW"))
        points = [
            (s.day.strftime("%m-%d"), s.coverage, s.stripe_balance / 100, s.owed_total / 100)
            for s in snapshots
        ]
        return render(
            request,
            "staff/risk.html",
            {
                "risk": risk,
                "asset": USD,
                "threshold": threshold,
                "snapshots": list(reversed(snapshots))[:14],
                "chart": risk_chart_svg(points=points, threshold=threshold) if points else "",
                "below": risk.coverage is not None and risk.coverage < threshold,
            },
        )
