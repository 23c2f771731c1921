"""Closing a campaign: the unreserved balance goes back to platform:marketing, the campaign
takes nothing new, open reservations release to platform:marketing afterwards."""

from __future__ import annotations

import pytest

from audit.models import AuditEntry
from ledger.selectors import balance_get
from marketplace.models import Order
from marketplace.selectors import campaign_report_get, campaign_spend_per_day
from marketplace.services.campaigns import campaign_close, campaign_fund, campaign_pause
from marketplace.services.errors import CampaignClosed, CouponUnavailable
from marketplace.services.orders import order_cancel, order_create
from tests.auth import make_user, token_client
from tests.marketplace.factories import CampaignFactory, RestaurantFactory
from tests.marketplace.fakes import FakeGateway, fake_gateway
from tests.marketplace.flows import pay, placed_order

__all__ = ["fake_gateway"]

pytestmark = pytest.mark.django_db


def test_close_returns_the_unreserved_budget_and_reservations_release_afterwards(
    fake_gateway: FakeGateway,
) -> None:
    # given: a funded campaign, one paid order and one open reservation
    campaign = CampaignFactory(funding=10_000, per_order_cap=500)
    restaurant = RestaurantFactory()
    paid_order, intent = placed_order(
        fake_gateway,
        restaurant_id=restaurant.pk,
        subtotal=2000,
        delivery_fee=500,
        coupon_code=campaign.code,
    )
    pay(fake_gateway, paid_order, intent)
    open_order = order_create(
        restaurant_id=restaurant.pk, subtotal=2000, delivery_fee=500, coupon_code=campaign.code
    )
    marketing_before = balance_get(address="platform:marketing", asset="USD/2")
    actor = make_user("mk", roles=["Marketing"])

    # when
    closed = campaign_close(campaign_id=campaign.pk, actor=actor)

    # then: 10,000 - 500 spent - 500 reserved back to marketing
    assert closed.closed_at is not None
    assert balance_get(address=campaign.ledger_address, asset="USD/2") == 0
    assert balance_get(address="platform:marketing", asset="USD/2") == marketing_before + 9_000
    entry = AuditEntry.objects.get(action="campaign.close")
    assert (entry.actor_label, entry.amount) == ("mk", 9_000)

    # when: the open reservation is released (the order is canceled)
    order_cancel(order_id=open_order.pk, actor="test", note="customer left")

    # then: back to marketing, not to the emptied campaign account
    assert balance_get(address=campaign.ledger_address, asset="USD/2") == 0
    assert balance_get(address="platform:marketing", asset="USD/2") == marketing_before + 9_500
    assert Order.objects.get(pk=open_order.pk).coupon_state == "released"

    # and: the campaign takes nothing new; closing again is a no-op
    with pytest.raises(CampaignClosed):
        campaign_fund(campaign_id=campaign.pk, amount=1)
    with pytest.raises(CampaignClosed):
        campaign_pause(campaign_id=campaign.pk, paused=False)
    with pytest.raises(CouponUnavailable):
        order_create(
            restaurant_id=restaurant.pk, subtotal=2000, delivery_fee=500, coupon_code=campaign.code
        )
    assert campaign_close(campaign_id=campaign.pk).closed_at == closed.closed_at
    assert AuditEntry.objects.filter(action="campaign.close").count() == 1

    # and: its numbers
    report = campaign_report_get(campaign_id=campaign.pk)
    assert report is not None
    assert (report.closed, report.remaining, report.spent, report.orders) == (True, 0, 500, 1)
    per_day = campaign_spend_per_day(campaign_id=campaign.pk, days=7)
    assert len(per_day) == 7 and per_day[-1][1] == 500 and sum(v for _, v in per_day) == 500


def test_close_through_the_api_needs_manage_campaigns() -> None:
    campaign = CampaignFactory(funding=1_000)
    support = token_client(make_user("s", roles=["Support"]))
    marketing = token_client(make_user("m", roles=["Marketing"]))
    assert support.post(f"/api/v1/campaigns/{campaign.pk}/close/").status_code == 403
    response = marketing.post(f"/api/v1/campaigns/{campaign.pk}/close/")
    assert response.status_code == 200 and response.json()["closed_at"]
