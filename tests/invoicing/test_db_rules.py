"""The database refuses changes to issued documents; numbering is gapless under concurrency."""

from __future__ import annotations

import threading

import pytest
from django.db import DatabaseError, connection, connections, transaction

from invoicing.models import Invoice, OrderInvoicing
from invoicing.services import invoices_issue
from tests.invoicing.helpers import delivered_order, restaurant, rider


def _raw(sql: str) -> None:
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(sql)


@pytest.mark.django_db
@pytest.mark.parametrize(
    "sql",
    [
        "UPDATE invoicing_invoice SET total_gross = total_gross + 1, total_net = total_net + 1",
        "DELETE FROM invoicing_invoice",
        "UPDATE invoicing_invoiceline SET description = 'changed'",
        "DELETE FROM invoicing_invoiceline",
    ],
)
def test_database_refuses_changes_to_issued_documents(sql):
    # given
    order = delivered_order(restaurant("A"), rider())
    invoices_issue([order.pk])
    before = list(Invoice.objects.values_list("display_number", "total_gross"))

    # when / then
    with pytest.raises(DatabaseError) as excinfo:
        _raw(sql)
    assert "issued documents are immutable" in str(excinfo.value)
    assert list(Invoice.objects.values_list("display_number", "total_gross")) == before


@pytest.mark.django_db
def test_database_refuses_to_change_the_model_of_a_documented_order():
    order = delivered_order(restaurant("A"), rider())
    invoices_issue([order.pk])

    with pytest.raises(DatabaseError) as excinfo:
        _raw(f"UPDATE invoicing_orderinvoicing SET model = 'C' WHERE order_id = {order.pk}")

    assert "frozen" in str(excinfo.value)
    assert OrderInvoicing.objects.get(order_id=order.pk).model == "A"


@pytest.mark.django_db(transaction=True)
def test_concurrent_issuers_number_without_gap_or_duplicate():
    # given: 3 restaurants, 40 delivered orders, issued by 8 threads on their own connections,
    # each thread issuing overlapping slices (so they also race on the same orders)
    restaurants = [restaurant(m) for m in ("A", "B", "C")]
    d = rider()
    orders = [delivered_order(restaurants[i % 3], d).pk for i in range(40)]
    errors: list[BaseException] = []
    barrier = threading.Barrier(8)

    def worker(n: int) -> None:
        try:
            barrier.wait()
            for start in range(n % 4, len(orders), 3):
                invoices_issue(orders[start : start + 2])
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    # then: every order documented once, numbers 1..N per series
    assert errors == []
    assert OrderInvoicing.objects.filter(documented=True).count() == 40
    per_series: dict[str, list[int]] = {}
    for series, number in Invoice.objects.values_list("series", "number"):
        per_series.setdefault(series, []).append(number)
    for numbers in per_series.values():
        assert sorted(numbers) == list(range(1, len(numbers) + 1))
    # A: 2 docs, B: 1, C: 2 per order
    assert Invoice.objects.count() == 14 * 2 + 13 * 1 + 13 * 2
