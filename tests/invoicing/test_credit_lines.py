"""Credit notes per original line (mixed tax rates), model B's platform-borne refunds and
lost disputes (credited by the restaurant, compensated on the platform's commission invoice),
a credit larger than the order's documents can take; on both write paths."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from django.db import transaction

from invoicing.check import invoices_check
from invoicing.models import Invoice, InvoicingAnomaly
from invoicing.services import invoices_issue, invoices_issue_period
from marketplace.services.disputes import dispute_sync
from tests.invoicing.helpers import coupon, delivered_order, docs, refund, restaurant, rider

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("both_paths")]

LATER = timedelta(days=40)  # the month of today is closed by then


def credit_lines(inv: Invoice) -> list[tuple[int, int, int, int | None, str]]:
    return [
        (x.gross, x.tax_bps, x.tax, x.original_position, x.account)
        for x in inv.lines.order_by("position")
    ]


def test_partial_refunds_of_a_mixed_rate_invoice_credit_each_line_in_proportion():
    # given: model B, food 2000 at 10%, delivery 500 at 20%, a 200 coupon at 10% (2300)
    r = restaurant("B", food_tax_bps=1000)
    order = delivered_order(r, rider(), coupon_code=coupon())
    invoices_issue([order.pk])
    invoice = docs(order)[f"order:{order.pk}:restaurant"]
    assert [(x.kind, x.gross, x.tax_bps) for x in invoice.lines.order_by("position")] == [
        ("food", 2000, 1000),
        ("delivery", 500, 2000),
        ("discount", -200, 1000),
    ]

    # when: 230 borne by the restaurant (10% of every line), then 1000 borne by the platform
    first = refund(order, 230, bearer="restaurant")
    second = refund(order, 1000, bearer="platform")
    invoices_issue([order.pk])

    # then: each credit line reduces one original line at its rate (tax by the same rule)
    found = docs(order)
    r_acct = r.ledger_address
    assert credit_lines(found[f"refund:{first.pk}:restaurant"]) == [
        (-200, 1000, -18, 1, r_acct),
        (-50, 2000, -8, 2, r_acct),
        (20, 1000, 2, 3, r_acct),
    ]
    # 1000 over what remains (1800, 450, -180 = 2070): 869.57, 217.39, -86.96; the one unit
    # the floors leave goes to the largest remainder, the food line
    note = found[f"refund:{second.pk}:restaurant"]
    assert credit_lines(note) == [
        (-870, 1000, -79, 1, r_acct),
        (-217, 2000, -36, 2, r_acct),
        (87, 1000, 8, 3, r_acct),
    ]
    assert (note.total_gross, note.total_tax, note.total_net) == (-1000, -107, -893)
    assert note.original_id == invoice.pk and note.issuer == r_acct
    assert invoices_check().ok


def test_model_b_platform_borne_refund_is_compensated_on_the_commission_invoice():
    # given: a model B order (restaurant 1700, commission 300, delivery 500), invoiced
    r = restaurant("B")
    d = rider()
    order = delivered_order(r, d)
    invoices_issue([order.pk])

    # when: the platform bears a 400 refund at a loss
    row = refund(order, 400, bearer="platform")
    invoices_issue([order.pk])

    # then: the customer's only supplier, the restaurant, credits its invoice ...
    note = docs(order)[f"refund:{row.pk}:restaurant"]
    assert note.total_gross == -400 and note.customer_facing
    assert {x.account for x in note.lines.all()} == {r.ledger_address}
    # ... which ties while the month is open (the compensation is pending month-end) ...
    open_month = invoices_check()
    assert open_month.ok and open_month.pending == 1
    # ... and not once the month is closed without the month-end documents
    closed = invoices_check(now=datetime.now(UTC) + LATER)
    assert any("platform:losses documented 0, ledger -400" in m for m in closed.mismatches)

    # when: month end
    invoices_issue_period(period=f"{datetime.now(UTC):%Y-%m}")

    # then: the platform's commission invoice to the restaurant gives the 400 back, out of
    # platform:losses; everything ties
    commission = Invoice.objects.get(kind="commission", recipient=r.ledger_address)
    assert [
        (x.kind, x.gross, x.account, x.counter_account)
        for x in commission.lines.order_by("position")
    ] == [
        ("commission", 300, "platform:fees", r.ledger_address),
        ("delivery", 500, "", r.ledger_address),
        ("compensation", -400, "platform:losses", r.ledger_address),
    ]
    assert commission.total_gross == 400
    assert "less the refunds" in commission.legal_mention
    assert invoices_check(now=datetime.now(UTC) + LATER).ok


def _lose_dispute(order, dp_id: str, amount: int) -> None:
    stripe_dispute = {
        "id": dp_id,
        "charge": order.charge_id,
        "amount": amount,
        "currency": "usd",
        "status": "lost",
        "reason": "fraudulent",
        "balance_transactions": [
            {"id": f"txn_{dp_id}", "amount": -amount, "fee": 1500, "created": 1}
        ],
        "metadata": {},
    }
    with transaction.atomic(durable=True):
        dispute_sync(stripe_dispute=stripe_dispute)


@pytest.mark.parametrize("model", ["A", "B", "C"])
def test_lost_dispute_is_credited_under_each_model_and_ties_after_month_end(model):
    r = restaurant(model)
    order = delivered_order(r, rider())
    invoices_issue([order.pk])

    _lose_dispute(order, f"dp_lines_{model}", 1000)
    invoices_issue([order.pk])
    invoices_issue_period(period=f"{datetime.now(UTC):%Y-%m}")

    notes = Invoice.objects.filter(order_id=order.pk, kind="credit_note", customer_facing=True)
    assert sum(n.total_gross for n in notes) == -1000
    if model == "B":  # platform:disputes bore it: compensated to the restaurant
        line = Invoice.objects.get(kind="commission").lines.get(kind="compensation")
        assert (line.gross, line.account) == (-1000, "platform:disputes")
    assert invoices_check(now=datetime.now(UTC) + LATER).ok


def test_credit_larger_than_the_documents_can_take_is_an_anomaly_and_issues_nothing():
    # given: 1500 refunded and credited, then the customer wins a chargeback of the whole
    # 2500 charge: 4000 to credit on documents worth 2500
    r = restaurant("A")
    order = delivered_order(r, rider())
    invoices_issue([order.pk])
    refund(order, 1500, bearer="platform")
    invoices_issue([order.pk])
    before = sorted(docs(order))

    # when
    _lose_dispute(order, "dp_too_much", 2500)
    result = invoices_issue([order.pk])

    # then: nothing is issued for the dispute, an anomaly says why, and the check reports it
    assert result.count == 0 and sorted(docs(order)) == before
    anomaly = InvoicingAnomaly.objects.get(kind="credit_exceeds_documents")
    assert anomaly.order_id == order.pk and "can credit only 1000 more" in anomaly.message
    assert not invoices_check().ok
    # a replay changes nothing
    assert invoices_issue([order.pk]).count == 0
    assert InvoicingAnomaly.objects.filter(kind="credit_exceeds_documents").count() == 1
