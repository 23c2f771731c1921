"""Hypothesis: random orders, coupons and refunds (before and after delivery, every bearer,
several in a row) under random models tie to the ledger exactly, whatever order the issuing
runs in; every credit line reduces one line of its original at that line's rate, no line is
ever credited beyond its amount, and each refund's customer credit notes total the refund."""

from __future__ import annotations

from collections import defaultdict
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from invoicing.check import invoices_check
from invoicing.models import Invoice
from invoicing.services import invoices_issue, invoices_issue_period
from marketplace.models import Refund
from marketplace.services.orders import order_deliver
from tests.invoicing.helpers import coupon, paid_order, refund, restaurant, rider

order_st = st.fixed_dictionaries(
    {
        "model": st.sampled_from("ABC"),
        "subtotal": st.integers(100, 5000),
        "delivery_fee": st.sampled_from([0, 199, 500]),
        "coupon": st.booleans(),
        "pre_refund": st.integers(0, 3),  # tenths of the total, before delivery
        # after delivery, one after the other: (tenths of what is left, bearer)
        "post_refunds": st.lists(
            st.tuples(
                st.integers(1, 10), st.sampled_from(["platform", "restaurant", "rider", "shared"])
            ),
            max_size=3,
        ),
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
        for tenths, bearer in spec["post_refunds"]:
            order.refresh_from_db()
            post = order.refundable * tenths // 10
            if not post:
                continue
            shares = {}
            if bearer == "shared":
                shares = {"restaurant_share": "50%", "rider_share": "20%"}
            refund(order, post, bearer=bearer, **shares)
            if spec["issue_between"]:
                invoices_issue([order.pk])
        ids.append(order.pk)

    invoices_issue(ids)
    invoices_issue_period(period=f"{datetime.now(UTC):%Y-%m}")

    result = invoices_check(now=datetime.now(UTC) + timedelta(days=40))
    assert result.ok, result.mismatches
    for inv in Invoice.objects.all():
        assert inv.total_gross == sum(x.gross for x in inv.lines.all())
    credited: dict[tuple[int, int], int] = defaultdict(int)  # (original, position) -> taken
    for note in Invoice.objects.filter(kind="credit_note").select_related("original"):
        rates = {x.position: x.tax_bps for x in note.original.lines.all()}
        for line in note.lines.all():
            assert line.tax_bps == rates[line.original_position]
            credited[(note.original_id, line.original_position)] += -line.gross
    for inv in Invoice.objects.exclude(kind="credit_note"):
        for line in inv.lines.all():
            taken = credited.get((inv.pk, line.position), 0)
            assert (0 <= taken <= line.gross) if line.gross >= 0 else (line.gross <= taken <= 0)
    for row in Refund.objects.filter(order_id__in=ids, source=Refund.Source.PARTIES):
        notes = Invoice.objects.filter(credit_event=f"refund:{row.pk}", customer_facing=True)
        assert sum(n.total_gross for n in notes) == -row.amount
