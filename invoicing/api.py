"""`/api/v1/invoices/`: list and read issued documents (filters: order, party, period, kind),
download one as PDF or HTML. Permissions are named: `invoicing.view_invoice` to read,
`invoicing.download_invoice` for the PDF."""

from __future__ import annotations

import re
from typing import Any

from django.db.models import Q, QuerySet
from django.http import HttpResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema
from rest_framework import serializers, viewsets
from rest_framework.decorators import action
from rest_framework.exceptions import ValidationError
from rest_framework.permissions import BasePermission
from rest_framework.request import Request

from invoicing.models import Invoice, InvoiceLine
from invoicing.render import invoice_html, invoice_pdf

PERIOD = re.compile(r"^(\d{4})-(0[1-9]|1[0-2])$")


class HasInvoicePermission(BasePermission):
    """`invoicing.view_invoice`; `invoicing.download_invoice` too for the PDF."""

    def has_permission(self, request: Any, view: Any) -> bool:
        user = request.user
        if not (user and user.is_authenticated and user.has_perm("invoicing.view_invoice")):
            return False
        if getattr(view, "action", None) == "pdf":
            return bool(user.has_perm("invoicing.download_invoice"))
        return True


class InvoiceLineSerializer(serializers.ModelSerializer):
    class Meta:
        model = InvoiceLine
        fields = [
            "position",
            "order",
            "kind",
            "description",
            "gross",
            "tax_bps",
            "tax",
            "net",
            "account",
            "counter_account",
            "ledger_transaction_id",
        ]


class InvoiceSerializer(serializers.ModelSerializer):
    lines = InvoiceLineSerializer(many=True, read_only=True)
    original: serializers.SlugRelatedField = serializers.SlugRelatedField(
        slug_field="display_number", read_only=True
    )

    class Meta:
        model = Invoice
        fields = [
            "id",
            "display_number",
            "kind",
            "model",
            "issuer",
            "recipient",
            "customer_facing",
            "issuer_details",
            "recipient_details",
            "legal_mention",
            "order",
            "period",
            "original",
            "credit_event",
            "asset",
            "total_gross",
            "total_tax",
            "total_net",
            "ledger_transactions",
            "issued_at",
            "lines",
        ]


class InvoiceViewSet(viewsets.ReadOnlyModelViewSet):
    serializer_class = InvoiceSerializer
    permission_classes = [HasInvoicePermission]

    def get_queryset(self) -> QuerySet[Invoice]:
        qs = Invoice.objects.select_related("original").prefetch_related("lines")
        params = self.request.query_params
        if order := params.get("order"):
            if not order.isdigit():
                raise ValidationError({"order": "an order id"})
            qs = qs.filter(Q(order_id=int(order)) | Q(lines__order_id=int(order))).distinct()
        if party := params.get("party"):
            qs = qs.filter(Q(issuer=party) | Q(recipient=party))
        if kind := params.get("kind"):
            if kind not in Invoice.Kind.values:
                raise ValidationError({"kind": f"one of {', '.join(Invoice.Kind.values)}"})
            qs = qs.filter(kind=kind)
        if period := params.get("period"):
            match = PERIOD.match(period)
            if not match:
                raise ValidationError({"period": "YYYY-MM"})
            year, month = int(match[1]), int(match[2])
            qs = qs.filter(
                Q(period__year=year, period__month=month)
                | Q(period__isnull=True, issued_at__year=year, issued_at__month=month)
            )
        return qs.order_by("id")

    @extend_schema(responses={(200, "application/pdf"): OpenApiTypes.BINARY})
    @action(detail=True, methods=["get"])
    def pdf(self, request: Request, pk: str | None = None) -> HttpResponse:
        invoice = self.get_object()
        response = HttpResponse(invoice_pdf(invoice), content_type="application/pdf")
        response["Content-Disposition"] = f'attachment; filename="{invoice.display_number}.pdf"'
        return response

    @extend_schema(responses={(200, "text/html"): OpenApiTypes.STR})
    @action(detail=True, methods=["get"])
    def html(self, request: Request, pk: str | None = None) -> HttpResponse:
        return HttpResponse(invoice_html(self.get_object()), content_type="text/html")
