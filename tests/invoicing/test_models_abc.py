"""Each model's documents for a paid + delivered order, built from the ledger."""

from __future__ import annotations

import pytest

from invoicing.check import invoices_check
from invoicing.services import invoices_issue, invoices_sweep
from tests.invoicing.helpers import delivered_order, docs, lines, restaurant, rider

pytestmark = pytest.mark.django_db


def test_model_a_restaurant_food_invoice_and_platform_fees_invoice():
    # given: a delivered order, subtotal 2000 at 15% commission, delivery 500
    r = restaurant("A", food_tax_bps=1000)
    order = delivered_order(r, rider())

    # when
    result = invoices_issue([order.pk])

    # then: the restaurant's food invoice (1700) and the platform's fees invoice (300 + 500)
    assert result.issued == {"A invoice": 2}
    found = docs(order)
    food = found[f"order:{order.pk}:restaurant"]
    fees = found[f"order:{order.pk}:platform"]
    assert food.display_number == f"R{r.pk:04d}-{food.year}-000001"
    assert lines(food) == [("food", 1700, 155, r.ledger_address)]
    assert lines(fees) == [("service", 300, 50, "platform:fees"), ("delivery", 500, 83, "")]
    assert (food.total_gross, food.total_tax, food.total_net) == (1700, 155, 1545)
    assert fees.total_gross == 800 and fees.total_tax == 133
    assert "in the name and on behalf of" in food.legal_mention
    assert invoices_check().ok


def test_model_b_whole_order_invoice_in_the_restaurant_series():
    r = restaurant("B")
    order = delivered_order(r, rider())

    invoices_issue([order.pk])

    found = docs(order)
    assert list(found) == [f"order:{order.pk}:restaurant"]
    inv = found[f"order:{order.pk}:restaurant"]
    assert [(k, g) for k, g, _, _ in lines(inv)] == [("food", 2000), ("delivery", 500)]
    assert inv.series == f"R{r.pk:04d}" and inv.customer_facing
    assert invoices_check().ok  # the commission is pending month-end, not a mismatch


def test_model_c_self_billing_and_platform_merchant_invoice():
    r = restaurant("C")
    order = delivered_order(r, rider())

    invoices_issue([order.pk])

    found = docs(order)
    sb = found[f"order:{order.pk}:self_billing"]
    inv = found[f"order:{order.pk}:platform"]
    assert sb.kind == "self_billing" and sb.recipient == "platform"
    assert lines(sb) == [("food", 1700, 155, r.ledger_address)]
    assert "Self-billing" in sb.legal_mention
    assert [(k, g) for k, g, _, _ in lines(inv)] == [("food", 2000), ("delivery", 500)]
    assert inv.series == "P"
    assert invoices_check().ok


def test_issuing_twice_issues_nothing_and_the_sweep_finds_delivered_orders():
    r = restaurant("A")
    order = delivered_order(r, rider())

    first = invoices_sweep()
    again = invoices_sweep()
    replay = invoices_issue([order.pk])

    assert first.count == 2
    assert again.count == 0 and replay.count == 0
    assert len(docs(order)) == 2
