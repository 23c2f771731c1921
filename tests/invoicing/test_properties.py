"""Hypothesis: random orders, coupons and refunds (before and after delivery, every bearer)
under random models tie to the ledger exactly, whatever order the issuing runs in."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from invoicing.check import invoices_check
from invoicing.models import Invoice
from invoicing.services import invoices_issue, invoices_issue_period
from marketplace.services.orders import order_deliver
from tests.invoicing.helpers import coupon, paid_order, refund, restaurant, rider

order_st = st.fixed_dictionaries(
    {
        "model": st.sampled_from("ABC"),
        "subtotal": st.integers(100, 5000),
        "delivery_fee": st.sampled_from([0, 199, 500]),
        "coupon": st.booleans(),
        "pre_refund": st.integers(0, 3),  # tenths of the total, before delivery
        "post_refund": st.integers(0, 10),  # tenths of what is left, after delivery
        "bearer": st.sampled_from(["platform", "restaurant", "rider", "shared"]),
        "issue_between": st.booleans(),
    }
)


@pytest.mark.django_db
@settings(
    max_examples=12,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(orders=st.lists(order_st, min_size=1, max_size=4))
def test_documents_tie_to_the_ledger(orders):
    code = coupon(funding=1_000_000, percent_off="25%", cap=700)
    d = rider()
    ids = []
    for spec in orders:
        r = restaurant(spec["model"])
        order = paid_order(
            r,
            subtotal=spec["subtotal"],
            delivery_fee=spec["delivery_fee"],
            coupon_code=code if spec["coupon"] else None,
        )
        pre = order.total * spec["pre_refund"] // 10
        if pre:
            refund(order, pre)
        order_deliver(order_id=order.pk, rider_id=d.pk)
        order.refresh_from_db()
        if spec["issue_between"]:
            invoices_issue([order.pk])
        post = order.refundable * spec["post_refund"] // 10
        if post:
            shares = {}
            if spec["bearer"] == "shared":
                shares = {"restaurant_share": "50%", "rider_share": "20%"}
            refund(order, post, bearer=spec["bearer"], **shares)
        ids.append(order.pk)

    invoices_issue(ids)
    invoices_issue_period(period=f"{datetime.now(UTC):%Y-%m}")

    result = invoices_check(now=datetime.now(UTC) + timedelta(days=40))
    assert result.ok, result.mismatches
    for inv in Invoice.objects.all():
        assert inv.total_gross == sum(x.gross for x in inv.lines.all())
