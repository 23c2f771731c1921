"""Coupon campaigns: create, fund (a ledger flow from the marketing budget into
`coupons:<code>`), pause and resume, and the discount an order gets."""

from __future__ import annotations

import re
from datetime import datetime
from functools import cache
from typing import Any

from django.db import IntegrityError, transaction
from django.utils import timezone

from audit.services import audit_record
from common import rawsql
from ledger.retry import retry_on_conflict
from marketplace.flows import flow_post, monetary
from marketplace.models import Campaign, CampaignFunding
from marketplace.models.campaigns import CODE_REGEX
from marketplace.services.common import amount_validate, apply_portion, portion_parse, stripe_meta
from marketplace.services.errors import (
    CampaignClosed,
    CampaignOverBudget,
    CouponUnavailable,
    InvalidInput,
    NotFound,
)
from marketplace.services.locks import campaign_lock


def campaign_create(
    *,
    code: str,
    budget: int,
    per_order_cap: int,
    percent_off: str = "100%",
    name: str = "",
    asset: str = "USD/2",
    starts_at: datetime | None = None,
    ends_at: datetime | None = None,
    actor: Any = None,
) -> Campaign:
    """Create a campaign (unfunded). Raises InvalidInput (bad code, amounts, portion,
    window, or the code is taken)."""
    if not isinstance(code, str) or not re.match(CODE_REGEX, code.strip().upper()):
        raise InvalidInput(
            "code must be 2-32 characters: letters, digits, '_' or '-'.", extra={"field": "code"}
        )
    code = code.strip().upper()
    amount_validate(budget, field="budget")
    amount_validate(per_order_cap, field="per_order_cap")
    portion = portion_parse(percent_off, field="percent_off")
    if portion == 0:
        raise InvalidInput("percent_off must be above 0%.", extra={"field": "percent_off"})
    starts = starts_at or timezone.now()
    if ends_at is not None and ends_at <= starts:
        raise InvalidInput("ends_at must be after starts_at.", extra={"field": "ends_at"})
    try:
        with transaction.atomic(durable=True):
            campaign = Campaign.objects.create(
                code=code,
                name=name or code,
                asset=asset,
                budget=budget,
                per_order_cap=per_order_cap,
                percent_off=percent_off.strip(),
                starts_at=starts,
                ends_at=ends_at,
            )
            audit_record(
                actor=actor,
                action="campaign.create",
                obj=campaign,
                amount=budget,
                asset=asset,
                data={"code": code, "per_order_cap": per_order_cap, "percent_off": percent_off},
            )
            return campaign
    except IntegrityError:
        if Campaign.objects.filter(code=code).exists():
            raise InvalidInput(
                f"A campaign with code {code} already exists.", code="campaign_code_taken"
            ) from None
        raise


@retry_on_conflict
def campaign_fund(*, campaign_id: int, amount: int, requested_by: Any = None) -> CampaignFunding:
    """Fund a campaign: `campaign-fund:<code>:<n>` moves `amount` from platform:marketing to
    coupons:<code>, with the funding row and the campaign's `funded` total, in one
    transaction. Raises InvalidInput, NotFound, CampaignOverBudget."""
    amount_validate(amount, field="amount")
    with transaction.atomic(durable=True):
        campaign = campaign_lock(campaign_id=campaign_id)
        _refuse_closed(campaign)
        if campaign.funded + amount > campaign.budget:
            raise CampaignOverBudget(
                f"Funding {amount} would take campaign {campaign.code} over its budget "
                f"({campaign.funded} of {campaign.budget} funded).",
                extra={"funded": campaign.funded, "budget": campaign.budget},
            )
        n = campaign.fundings.count() + 1
        result = flow_post(
            "campaign_fund",
            vars={"amount": monetary(campaign.asset, amount), "campaign": campaign.ledger_address},
            reference=f"campaign-fund:{campaign.code}:{n}",
            metadata=stripe_meta(campaign=campaign.code, funding=n),
        )
        funding = CampaignFunding.objects.create(
            campaign=campaign,
            n=n,
            amount=amount,
            requested_by=requested_by if getattr(requested_by, "pk", None) else None,
            ledger_transaction_id=result.transaction.pk,
        )
        campaign.funded += amount
        campaign.save(update_fields=["funded"])
        audit_record(
            actor=requested_by,
            action="campaign.fund",
            obj=campaign,
            amount=amount,
            asset=campaign.asset,
            data={"funding": n, "ledger_transaction": result.transaction.pk},
        )
    return funding


def campaign_pause(*, campaign_id: int, paused: bool = True, actor: Any = None) -> Campaign:
    """Pause (or resume) a campaign: a paused campaign takes no new orders; reservations
    already made stay valid."""
    with transaction.atomic(durable=True):
        campaign = campaign_lock(campaign_id=campaign_id)
        _refuse_closed(campaign)
        campaign.paused = paused
        campaign.save(update_fields=["paused"])
        audit_record(
            actor=actor, action="campaign.pause" if paused else "campaign.resume", obj=campaign
        )
    return campaign


def _refuse_closed(campaign: Campaign) -> None:
    if campaign.closed_at is not None:
        raise CampaignClosed(
            f"Campaign {campaign.code} was closed on {campaign.closed_at:%Y-%m-%d %H:%M}.",
            extra={"campaign_id": campaign.pk},
        )


@retry_on_conflict
def campaign_close(*, campaign_id: int, actor: Any = None) -> Campaign:
    """Close a campaign for good: it takes no new order and no funding, and the budget not
    yet reserved (the campaign account's whole balance, read under the ledger's lock) goes
    back to platform:marketing (`campaign-close:<code>`), in one transaction with the
    campaign row and the audit row. Reservations still open release to platform:marketing
    afterwards. Closing a closed campaign is a no-op. Raises NotFound."""
    with transaction.atomic(durable=True):
        campaign = campaign_lock(campaign_id=campaign_id)
        if campaign.closed_at is not None:
            return campaign
        result = flow_post(
            "campaign_close",
            vars={"asset": campaign.asset, "campaign": campaign.ledger_address},
            reference=f"campaign-close:{campaign.code}",
            metadata=stripe_meta(campaign=campaign.code),
        )
        returned = sum(p.amount for p in result.postings)
        campaign.closed_at = timezone.now()
        campaign.save(update_fields=["closed_at"])
        audit_record(
            actor=actor,
            action="campaign.close",
            obj=campaign,
            amount=returned,
            asset=campaign.asset,
            data={"returned": returned, "ledger_transaction": result.transaction.pk},
        )
    return campaign


def campaign_for_code(*, code: str, asset: str, at: datetime | None = None) -> Campaign:
    """The active campaign with this code, usable for an order in `asset`.
    Raises CouponUnavailable."""
    if not isinstance(code, str):
        raise CouponUnavailable("Unknown coupon code.")
    campaign = _campaign_by_code(code.strip().upper())
    if campaign is None:
        raise CouponUnavailable(f"Unknown coupon code {code!r}.", extra={"coupon": code})
    if not campaign.is_active(at):
        raise CouponUnavailable(
            f"Coupon {campaign.code} is not active.", extra={"coupon": campaign.code}
        )
    if campaign.asset != asset:
        raise CouponUnavailable(
            f"Coupon {campaign.code} is in {campaign.asset}, the order in {asset}.",
            extra={"coupon": campaign.code},
        )
    return campaign


@cache
def _campaign_by_code_sql() -> tuple[str, list[Any]]:
    fields, columns = rawsql.columns(Campaign)
    return f"SELECT {columns} FROM marketplace_campaign WHERE code = %s", fields


def _campaign_by_code(code: str) -> Campaign | None:
    """`Campaign.objects.filter(code=code).first()` as one raw statement (an order
    with a coupon reads it; the ORM's query building cost several times the round trip)."""
    sql, fields = _campaign_by_code_sql()
    row = rawsql.fetch_one(sql, [code])
    return None if row is None else rawsql.instance(Campaign, fields, row)


def coupon_discount(*, campaign: Campaign, subtotal: int) -> int:
    """The discount an order gets: `percent_off` of the subtotal, floored, at most the cap."""
    portion = portion_parse(campaign.percent_off, field="percent_off")
    return min(campaign.per_order_cap, apply_portion(subtotal, portion))


def campaign_get(*, campaign_id: int) -> Campaign:
    campaign = Campaign.objects.filter(pk=campaign_id).first()
    if campaign is None:
        raise NotFound(f"Campaign {campaign_id} does not exist.")
    return campaign
