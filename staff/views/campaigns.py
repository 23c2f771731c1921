"""Coupon campaigns: the list with their numbers, one campaign with its spend per day, and
create / fund / pause / resume / close, each shown first (what it will do, the postings) and
confirmed with a one-time token. Everything acts through `marketplace.services.campaigns`
with `actor` = the signed-in user (the services write the audit rows)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from config.errors import ApplicationError
from ledger.selectors import balance_get
from marketplace.models import Campaign
from marketplace.selectors import (
    campaign_report_get,
    campaign_reports_list,
    campaign_spend_per_day,
)
from marketplace.services.campaigns import (
    campaign_close,
    campaign_create,
    campaign_fund,
    campaign_pause,
)
from staff.charts import spend_chart_svg
from staff.tokens import token_claim, token_done, token_issue, token_release
from staff.views.base import AmountError, StaffView, amount_parse, amount_text, not_found

VIEW = ("marketplace.view_campaign",)
MANAGE = ("marketplace.view_campaign", "marketplace.manage_campaigns")


def _campaign(campaign_id: int) -> Campaign | None:
    return Campaign.objects.filter(pk=campaign_id).first() if campaign_id < 2**63 else None


class CampaignsView(StaffView):
    permissions = VIEW

    def get(self, request: HttpRequest) -> HttpResponse:
        return render(request, "staff/campaigns.html", {"reports": campaign_reports_list()})


class CampaignView(StaffView):
    permissions = VIEW

    def get(self, request: HttpRequest, campaign_id: int) -> HttpResponse:
        campaign = _campaign(campaign_id)
        report = campaign_report_get(campaign_id=campaign_id) if campaign else None
        if campaign is None or report is None:
            return not_found(request, f"There is no campaign {campaign_id}.")
        days = campaign_spend_per_day(campaign_id=campaign.pk, days=30)
        return render(
            request,
            "staff/campaign.html",
            {
                "campaign": campaign,
                "report": report,
                "chart": spend_chart_svg(days=days, asset=campaign.asset),
                "days": days,
                "can_manage": request.user.has_perm("marketplace.manage_campaigns"),
            },
        )


def _when(text: str) -> datetime | None:
    """A `datetime-local` input (UTC) or ISO text; None when empty. Raises AmountError."""
    text = (text or "").strip()
    if not text:
        return None
    value = parse_datetime(text)
    if value is None:
        raise AmountError(f"“{text}” is not a date and time.")
    if timezone.is_naive(value):
        value = timezone.make_aware(value, UTC)
    return value


class CampaignCreateView(StaffView):
    permissions = MANAGE
    FIELDS = ("code", "name", "budget", "percent_off", "per_order_cap", "starts_at", "ends_at")

    def _page(self, request: HttpRequest, values: dict[str, str], **extra: Any) -> HttpResponse:
        status = extra.pop("status", 200)
        return render(
            request, "staff/campaign_create.html", {"values": values, **extra}, status=status
        )

    def get(self, request: HttpRequest) -> HttpResponse:
        return self._page(request, {"percent_off": "20%"})

    def post(self, request: HttpRequest) -> HttpResponse:
        values = {f: str(request.POST.get(f, "")).strip()[:200] for f in self.FIELDS}
        asset = "USD/2"
        try:
            args: dict[str, Any] = {
                "code": values["code"].upper(),
                "name": values["name"],
                "budget": amount_parse(values["budget"], asset=asset),
                "per_order_cap": amount_parse(values["per_order_cap"], asset=asset),
                "percent_off": values["percent_off"],
                "asset": asset,
                "starts_at": _when(values["starts_at"]),
                "ends_at": _when(values["ends_at"]),
            }
        except AmountError as exc:
            return self._page(request, values, error=str(exc), status=400)
        if request.POST.get("action") != "confirm":
            if Campaign.objects.filter(code=args["code"]).exists():
                return self._page(
                    request,
                    values,
                    error=f"A campaign with code {args['code']} already exists.",
                    status=400,
                )
            token = token_issue(user=request.user, purpose="campaign.create")
            return self._page(request, values, confirm=args, token=token)
        token = str(request.POST.get("token", ""))
        claim = token_claim(token=token, user=request.user, purpose="campaign.create")
        if not claim.ok:
            messages.warning(request, claim.reason)
            return redirect(claim.result_url or reverse("staff:campaigns"))
        try:
            campaign = campaign_create(**args, actor=request.user)
        except ApplicationError as exc:
            token_release(token=token)
            return self._page(request, values, error=exc.message, status=400)
        url = reverse("staff:campaign", args=[campaign.pk])
        token_done(token=token, result_url=url)
        messages.success(request, f"Campaign {campaign.code} created (not funded yet).")
        return redirect(url)


class CampaignActionView(StaffView):
    """fund / pause / resume / close: GET (and POST action=preview for fund) shows what will
    happen with a one-time token; POST action=confirm does it."""

    permissions = MANAGE
    action = "pause"

    def _page(self, request: HttpRequest, campaign: Campaign, **extra: Any) -> HttpResponse:
        status = extra.pop("status", 200)
        report = campaign_report_get(campaign_id=campaign.pk)
        context = {
            "campaign": campaign,
            "report": report,
            "action": self.action,
            "balance": balance_get(address=campaign.ledger_address, asset=campaign.asset),
            "fundable": campaign.budget - campaign.funded,
            "fundable_text": amount_text(campaign.budget - campaign.funded, asset=campaign.asset),
            **extra,
        }
        return render(request, "staff/campaign_action.html", context, status=status)

    def _purpose(self, campaign: Campaign) -> str:
        return f"campaign.{self.action}:{campaign.pk}"

    def get(self, request: HttpRequest, campaign_id: int) -> HttpResponse:
        campaign = _campaign(campaign_id)
        if campaign is None:
            return not_found(request, f"There is no campaign {campaign_id}.")
        if campaign.closed_at is not None:
            return self._page(request, campaign, error=f"Campaign {campaign.code} is closed.")
        if self.action == "fund":
            return self._page(request, campaign, amount="")
        token = token_issue(user=request.user, purpose=self._purpose(campaign))
        return self._page(request, campaign, token=token, confirming=True)

    def post(self, request: HttpRequest, campaign_id: int) -> HttpResponse:
        campaign = _campaign(campaign_id)
        if campaign is None:
            return not_found(request, f"There is no campaign {campaign_id}.")
        amount = 0
        amount_raw = str(request.POST.get("amount", "")).strip()[:32]
        if self.action == "fund":
            try:
                amount = amount_parse(amount_raw, asset=campaign.asset)
            except AmountError as exc:
                return self._page(request, campaign, amount=amount_raw, error=str(exc), status=400)
            if campaign.funded + amount > campaign.budget:
                return self._page(
                    request,
                    campaign,
                    amount=amount_raw,
                    error=(
                        f"Funding {amount_text(amount, asset=campaign.asset)} would exceed the "
                        f"budget: at most {amount_text(campaign.budget - campaign.funded, asset=campaign.asset)} "
                        "can still be funded."
                    ),
                    status=400,
                )
            if request.POST.get("action") != "confirm":
                token = token_issue(user=request.user, purpose=self._purpose(campaign))
                return self._page(
                    request,
                    campaign,
                    amount=amount_raw,
                    amount_minor=amount,
                    token=token,
                    confirming=True,
                )
        token = str(request.POST.get("token", ""))
        url = reverse("staff:campaign", args=[campaign.pk])
        claim = token_claim(token=token, user=request.user, purpose=self._purpose(campaign))
        if not claim.ok:
            messages.warning(request, claim.reason)
            return redirect(claim.result_url or url)
        try:
            if self.action == "fund":
                campaign_fund(campaign_id=campaign.pk, amount=amount, requested_by=request.user)
                done = f"Campaign {campaign.code} funded with {amount_text(amount, asset=campaign.asset)}."
            elif self.action in ("pause", "resume"):
                campaign_pause(
                    campaign_id=campaign.pk, paused=self.action == "pause", actor=request.user
                )
                done = (
                    f"Campaign {campaign.code} {'paused' if self.action == 'pause' else 'resumed'}."
                )
            else:
                campaign_close(campaign_id=campaign.pk, actor=request.user)
                done = f"Campaign {campaign.code} closed: its unreserved balance went back to platform:marketing."
        except ApplicationError as exc:
            token_release(token=token)
            campaign.refresh_from_db()
            return self._page(
                request, campaign, amount=amount_raw, error=exc.message, status=exc.http_status
            )
        token_done(token=token, result_url=url)
        messages.success(request, done)
        return redirect(url)
