"""The API (named permissions, filters, PDF) and the rendering."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import Permission, User
from rest_framework.test import APIClient

from invoicing.models import Invoice
from invoicing.render import invoice_html
from invoicing.services import invoices_issue
from tests.invoicing.helpers import delivered_order, refund, restaurant, rider

pytestmark = pytest.mark.django_db


def _client(*perms: str, staff: bool = False) -> APIClient:
    user = User.objects.create_user(f"u{len(perms)}{staff}", is_staff=staff)
    for codename in perms:
        user.user_permissions.add(Permission.objects.get(codename=codename))
    client = APIClient()
    client.force_authenticate(user)
    return client


def test_staff_without_the_named_permission_is_refused():
    response = _client(staff=True).get("/api/v1/invoices/")
    assert response.status_code == 403


def test_list_filters_and_pdf_download():
    r = restaurant("A")
    order = delivered_order(r, rider())
    other = delivered_order(restaurant("C"), rider())
    invoices_issue([order.pk, other.pk])
    refund(order, 100)
    invoices_issue([order.pk])
    client = _client("view_invoice", "download_invoice")

    by_order = client.get(f"/api/v1/invoices/?order={order.pk}").json()["results"]
    by_kind = client.get("/api/v1/invoices/?kind=credit_note").json()["results"]
    by_party = client.get(f"/api/v1/invoices/?party={r.ledger_address}").json()["results"]
    bad = client.get("/api/v1/invoices/?period=2026-13")

    assert len(by_order) == 3
    assert [d["kind"] for d in by_kind] == ["credit_note"]
    assert {d["issuer"] for d in by_party} == {r.ledger_address}
    assert bad.status_code == 400
    invoice = Invoice.objects.filter(order_id=order.pk).first()
    pdf = client.get(f"/api/v1/invoices/{invoice.pk}/pdf/")
    assert pdf.status_code == 200 and pdf.content.startswith(b"%PDF")


def test_pdf_needs_the_download_permission():
    order = delivered_order(restaurant("A"), rider())
    invoices_issue([order.pk])
    invoice = Invoice.objects.first()

    response = _client("view_invoice").get(f"/api/v1/invoices/{invoice.pk}/pdf/")

    assert response.status_code == 403


def test_html_shows_parties_lines_tax_breakdown_and_legal_mention():
    order = delivered_order(restaurant("A", legal_name="Chez Test SARL"), rider())
    invoices_issue([order.pk])
    food = Invoice.objects.get(key=f"order:{order.pk}:restaurant")

    html = invoice_html(food)

    assert food.display_number in html
    assert "Chez Test SARL" in html
    assert "17.00" in html and "1.55" in html and "10%" in html
    assert "in the name and on behalf of Chez Test SARL" in html
