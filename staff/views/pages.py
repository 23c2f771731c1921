"""Read-only pages: home, search, orders, an order, a customer, the audit trail."""

from __future__ import annotations

from typing import Any

from django.contrib.auth import views as auth_views
from django.contrib.auth.forms import AuthenticationForm
from django.core.exceptions import ValidationError
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render

from audit.selectors import audit_entries
from marketplace.models import Customer, Order
from staff import selectors
from staff.views.base import StaffView, int_param, not_found


class StaffAuthenticationForm(AuthenticationForm):
    def confirm_login_allowed(self, user: Any) -> None:
        super().confirm_login_allowed(user)
        if not (user.is_staff or user.is_superuser):
            raise ValidationError(
                "This account is not a staff account: it cannot sign in to the dashboard.",
                code="not_staff",
            )


class LoginView(auth_views.LoginView):
    template_name = "staff/login.html"
    authentication_form = StaffAuthenticationForm
    redirect_authenticated_user = True


class LogoutView(auth_views.LogoutView):
    next_page = "staff:login"


class HomeView(StaffView):
    def get(self, request: HttpRequest) -> HttpResponse:
        return render(request, "staff/home.html", {"today": selectors.today_numbers()})


class SearchView(StaffView):
    permissions = ("marketplace.view_order",)

    def get(self, request: HttpRequest) -> HttpResponse:
        result = selectors.search(query=request.GET.get("q", ""), user=request.user)
        hits = [
            h
            for h in result.hits
            if h.kind != "customer" or request.user.has_perm("marketplace.view_customer")
        ]
        if len(hits) == 1 and result.transaction is None:
            return redirect(hits[0].url)
        if result.hits and not hits:
            result.message = "The only matches are customers, which your role may not view."
        return render(request, "staff/search.html", {"result": result, "hits": hits})


class OrdersView(StaffView):
    permissions = ("marketplace.view_order",)

    def get(self, request: HttpRequest) -> HttpResponse:
        status = request.GET.get("status", "")
        if status not in Order.Status.values:
            status = ""
        page = selectors.orders_page(before=int_param(request.GET.get("before")), status=status)
        return render(
            request,
            "staff/orders.html",
            {"page": page, "status": status, "statuses": Order.Status.choices},
        )


class OrderView(StaffView):
    permissions = ("marketplace.view_order",)

    def get(self, request: HttpRequest, order_id: int) -> HttpResponse:
        order = selectors.order_get(order_id=order_id)
        if order is None:
            return not_found(request, f"There is no order {order_id}.")
        return render(
            request,
            "staff/order.html",
            {
                "order": order,
                "timeline": selectors.order_timeline(order=order),
                "refundable": order.refundable,
                "can_refund": order.status in (Order.Status.PAID, Order.Status.DELIVERED)
                and order.refundable > 0,
            },
        )


class CustomerView(StaffView):
    permissions = ("marketplace.view_customer", "marketplace.view_order")

    def get(self, request: HttpRequest, customer_id: int) -> HttpResponse:
        customer = Customer.objects.filter(pk=customer_id).first() if customer_id < 2**63 else None
        if customer is None:
            return not_found(request, f"There is no customer {customer_id}.")
        return render(
            request,
            "staff/customer.html",
            {
                "customer": customer,
                "page": selectors.customer_orders(
                    customer=customer, before=int_param(request.GET.get("before"))
                ),
                "refunds": selectors.customer_refunds(customer=customer),
            },
        )


class AuditView(StaffView):
    permissions = ("audit.view_auditentry",)

    def get(self, request: HttpRequest) -> HttpResponse:
        user = request.GET.get("user", "").strip()[:200]
        action = request.GET.get("action", "").strip()[:64]
        obj = request.GET.get("object", "").strip()[:130]
        object_type, _, object_id = obj.partition(":")
        before = int_param(request.GET.get("before"))
        rows = audit_entries(
            actor=user,
            action=action,
            object_type=object_type,
            object_id=object_id,
            before_id=before,
            limit=51,
        )
        more = len(rows) > 50
        rows = rows[:50]
        return render(
            request,
            "staff/audit.html",
            {
                "rows": rows,
                "next_before": rows[-1].pk if more and rows else None,
                "user_filter": user,
                "action_filter": action,
                "object_filter": obj,
            },
        )
