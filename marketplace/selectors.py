"""Reading the marketplace's books (selectors read; services write). No locks are taken.

- `payee_balances_list` / `payee_balance_get`: what each restaurant or rider can be paid
  ("available for payout": the balance of `restaurants:001`, which may be negative: a
  receivable netted from future payouts), and what is in flight in their payout accounts.
- `owed_get`: what is owed to whom, now or at a past instant, by account group.
- `risk_get`: defaulting risk: the Stripe balance against everything owed to restaurants,
  riders, open orders and payouts in flight; plus marketing spend and losses per campaign.
- `balance_sheet_get` is the ledger's (assets = liabilities + equity) from the chart.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any, Literal

from django.db.models import Count, Q, Sum
from django.db.models.functions import TruncDate
from django.utils import timezone

from ledger.domain import format_amount
from ledger.models import Posting
from ledger.selectors import balance_get, balances_get
from marketplace.models import Campaign, Dispute, Order, Restaurant, Rider

logger = logging.getLogger(__name__)

USD = "USD/2"


# --- payees ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class PayeeBalance:
    kind: str  # restaurant | rider
    id: int
    name: str
    ledger_address: str
    stripe_account_id: str
    payouts_on_hold: bool
    asset: str
    available: int  # the payee account's balance: > 0 owed to it, < 0 it owes us
    in_flight: int  # in its payout accounts (`<address>:payouts:<n>`)


def _payee_model(kind: str) -> type[Restaurant] | type[Rider]:
    if kind == "restaurant":
        return Restaurant
    if kind == "rider":
        return Rider
    raise ValueError(f"unknown payee kind {kind!r}")


def payee_balances_list(
    *, kind: Literal["restaurant", "rider"], at: datetime | None = None
) -> list[PayeeBalance]:
    """Every restaurant (or rider) with its available balance, in id order (two queries)."""
    model = _payee_model(kind)
    prefix = model.LEDGER_PREFIX
    main = balances_get(pattern=f"{prefix}:*", at=at).accounts
    payouts = balances_get(pattern=f"{prefix}:*:payouts:*", at=at).accounts
    in_flight: dict[str, dict[str, int]] = {}
    for address, by_asset in payouts.items():
        owner = ":".join(address.split(":")[:2])
        for asset, amount in by_asset.items():
            in_flight.setdefault(owner, {}).setdefault(asset, 0)
            in_flight[owner][asset] += amount
    result = []
    for payee in model.objects.order_by("id"):
        address = payee.ledger_address
        result.append(
            PayeeBalance(
                kind=kind,
                id=payee.pk,
                name=payee.name,
                ledger_address=address,
                stripe_account_id=payee.stripe_account_id,
                payouts_on_hold=payee.payouts_on_hold,
                asset=payee.asset,
                available=main.get(address, {}).get(payee.asset, 0),
                in_flight=in_flight.get(address, {}).get(payee.asset, 0),
            )
        )
    return result


def payee_balance_get(*, payee: Restaurant | Rider, at: datetime | None = None) -> PayeeBalance:
    kind = "restaurant" if isinstance(payee, Restaurant) else "rider"
    in_flight = balances_get(pattern=f"{payee.ledger_address}:payouts:*", asset=payee.asset, at=at)
    return PayeeBalance(
        kind=kind,
        id=payee.pk,
        name=payee.name,
        ledger_address=payee.ledger_address,
        stripe_account_id=payee.stripe_account_id,
        payouts_on_hold=payee.payouts_on_hold,
        asset=payee.asset,
        available=balance_get(address=payee.ledger_address, asset=payee.asset, at=at),
        in_flight=in_flight.totals.get(payee.asset, 0),
    )


# --- what is owed to whom -----------------------------------------------------------------------

# (group, patterns, counted in "owed" for the defaulting risk)
OWED_GROUPS: tuple[tuple[str, tuple[str, ...], bool], ...] = (
    ("restaurants", ("restaurants:*",), True),
    ("riders", ("riders:*",), True),
    ("payouts in flight", ("restaurants:*:payouts:*", "riders:*:payouts:*"), True),
    ("open orders", ("orders:*",), True),
    ("coupon reservations", ("orders:*:coupon",), False),
    ("payments in transit", ("payments:*",), True),
)


@dataclass(frozen=True)
class OwedGroup:
    name: str
    accounts: int
    owed: int  # sum of positive balances: what the platform owes
    receivable: int  # minus the sum of negative balances: what they owe the platform
    counts_for_risk: bool

    @property
    def net(self) -> int:
        return self.owed - self.receivable


@dataclass(frozen=True)
class Owed:
    asset: str
    at: datetime | None
    groups: list[OwedGroup]

    @property
    def owed(self) -> int:
        return sum(g.owed for g in self.groups if g.counts_for_risk)

    @property
    def receivable(self) -> int:
        return sum(g.receivable for g in self.groups if g.counts_for_risk)


def owed_get(*, asset: str = USD, at: datetime | None = None) -> Owed:
    """What is owed to whom (liabilities by group), now or at instant `at`."""
    groups = []
    for name, patterns, counts in OWED_GROUPS:
        owed = receivable = accounts = 0
        for pattern in patterns:
            # zero balances count for nothing here: the non-zero ones only (most order and
            # payment accounts net to zero), from the checkpoints now as at `at`
            balances = balances_get(pattern=pattern, asset=asset, at=at, nonzero=True)
            for by_asset in balances.accounts.values():
                amount = by_asset.get(asset, 0)
                if amount == 0:
                    continue
                accounts += 1
                if amount > 0:
                    owed += amount
                else:
                    receivable -= amount
        groups.append(OwedGroup(name, accounts, owed, receivable, counts))
    return Owed(asset=asset, at=at, groups=groups)


# --- campaigns ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class CampaignReport:
    id: int
    code: str
    asset: str
    budget: int
    funded: int
    remaining: int  # the campaign account's balance: budget not yet reserved
    reserved: int  # held for orders not yet paid
    spent: int  # discounts that joined paid orders (the marketing spend)
    orders: int  # orders that used the coupon and were paid
    losses: int  # refunds at loss and disputes on those orders
    paused: bool
    closed: bool = False


def campaign_reports_list(
    *, asset: str | None = None, campaign_id: int | None = None
) -> list[CampaignReport]:
    campaigns = Campaign.objects.order_by("id")
    if asset:
        campaigns = campaigns.filter(asset=asset)
    if campaign_id is not None:
        campaigns = campaigns.filter(pk=campaign_id)
    orders = Order.objects.filter(campaign__isnull=False)
    if campaign_id is not None:
        orders = orders.filter(campaign_id=campaign_id)
    stats: dict[int, dict[str, Any]] = {
        row["campaign_id"]: dict(row)
        for row in orders.values("campaign_id").annotate(
            reserved=Sum("discount", filter=Q(coupon_state=Order.CouponState.RESERVED)),
            spent=Sum("discount", filter=Q(coupon_state=Order.CouponState.CAPTURED)),
            paid=Count("id", filter=Q(coupon_state=Order.CouponState.CAPTURED)),
        )
    }
    reports = []
    for campaign in campaigns:
        row: dict[str, Any] = stats.get(campaign.pk, {})
        losses = (
            Posting.objects.filter(
                transaction__metadata__campaign=campaign.code,
                source__address__in=["platform:losses", "platform:disputes"],
                asset=campaign.asset,
            ).aggregate(total=Sum("amount"))["total"]
            or 0
        )
        reports.append(
            CampaignReport(
                id=campaign.pk,
                code=campaign.code,
                asset=campaign.asset,
                budget=campaign.budget,
                funded=campaign.funded,
                remaining=balance_get(address=campaign.ledger_address, asset=campaign.asset),
                reserved=row.get("reserved") or 0,
                spent=row.get("spent") or 0,
                orders=row.get("paid") or 0,
                losses=int(losses),
                paused=campaign.paused,
                closed=campaign.closed_at is not None,
            )
        )
    return reports


def campaign_report_get(*, campaign_id: int) -> CampaignReport | None:
    """One campaign's numbers (the same as campaign_reports_list's row), or None."""
    reports = campaign_reports_list(campaign_id=campaign_id)
    return reports[0] if reports else None


def campaign_spend_per_day(*, campaign_id: int, days: int = 90) -> list[tuple[date, int]]:
    """Discounts that joined paid orders, per UTC day of payment, over the last `days` days
    (one grouped query on the campaign's orders, by the campaign index), oldest first, with
    the days without spend included as 0."""
    days = max(1, min(int(days), 366))
    end = timezone.now().astimezone(UTC).date()
    start = end - timedelta(days=days - 1)
    rows = (
        Order.objects.filter(
            campaign_id=campaign_id,
            coupon_state=Order.CouponState.CAPTURED,
            paid_at__date__gte=start,
        )
        .annotate(day=TruncDate("paid_at", tzinfo=UTC))
        .values("day")
        .annotate(spent=Sum("discount"))
        .order_by("day")
    )
    spent = {row["day"]: int(row["spent"] or 0) for row in rows}
    return [
        (start + timedelta(days=i), spent.get(start + timedelta(days=i), 0)) for i in range(days)
    ]


# --- defaulting risk ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Risk:
    asset: str
    at: datetime | None
    stripe_balance: int  # what the ledger says is at Stripe (stripe:balance, negated)
    owed: Owed
    campaigns: list[CampaignReport] = field(default_factory=list)
    losses: int = 0  # platform:losses + platform:disputes, all campaigns or not
    open_disputes: int = 0

    @property
    def owed_total(self) -> int:
        """Gross: what payees, open orders and payouts in flight could ask for."""
        return self.owed.owed

    @property
    def shortfall(self) -> int:
        """How much the platform could not pay if everyone asked now (0 if covered)."""
        return max(0, self.owed_total - self.stripe_balance)

    @property
    def covered(self) -> bool:
        return self.shortfall == 0

    @property
    def coverage(self) -> float | None:
        return None if self.owed_total == 0 else self.stripe_balance / self.owed_total

    def fmt(self, amount: int) -> str:
        return format_amount(self.asset, amount)


def risk_get(*, asset: str = USD, at: datetime | None = None, warn: bool = True) -> Risk:
    """The defaulting risk. Logs a warning when the Stripe balance cannot cover everything
    owed (a top-up is due before the next payouts)."""
    stripe_balance = -balance_get(address="stripe:balance", asset=asset, at=at)
    losses = -(
        balance_get(address="platform:losses", asset=asset, at=at)
        + balance_get(address="platform:disputes", asset=asset, at=at)
    )
    risk = Risk(
        asset=asset,
        at=at,
        stripe_balance=stripe_balance,
        owed=owed_get(asset=asset, at=at),
        campaigns=campaign_reports_list(asset=asset),
        losses=losses,
        open_disputes=Dispute.objects.filter(
            status__in=["warning_needs_response", "needs_response", "under_review"]
        ).count(),
    )
    if warn and not risk.covered:
        logger.warning(
            "defaulting risk: the Stripe balance (%s %s) cannot cover what is owed (%s); "
            "short by %s: top up before paying out",
            risk.fmt(stripe_balance),
            asset,
            risk.fmt(risk.owed_total),
            risk.fmt(risk.shortfall),
        )
    return risk


# --- risk over time -------------------------------------------------------------------------


def risk_snapshot_figures(risk: Risk) -> dict[str, int]:
    """The owed groups a snapshot keeps, from a `risk_get` answer."""
    by_name = {g.name: g.owed for g in risk.owed.groups}
    return {
        "owed_payees": by_name.get("restaurants", 0) + by_name.get("riders", 0),
        "owed_open_orders": by_name.get("open orders", 0),
        "owed_in_flight": by_name.get("payouts in flight", 0),
        "owed_total": risk.owed_total,
    }


def risk_snapshots_list(*, asset: str = USD, days: int = 90) -> list[Any]:
    """The last `days` daily snapshots of `asset`, oldest first (at most `days` rows)."""
    from marketplace.models import RiskSnapshot

    since = timezone.now().date() - timedelta(days=days - 1)
    return list(RiskSnapshot.objects.filter(asset=asset, day__gte=since).order_by("day"))
