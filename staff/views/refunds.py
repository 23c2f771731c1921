"""The refund dialog (form -> preview of the exact postings -> confirmation -> the refund's
page, whose status updates itself), the approvals queue, approve and reject.

Everything acts through `marketplace.services.refunds`, the same functions the API calls,
with `requested_by` / `actor` = the signed-in user: the services check the amounts, the
order's state and the four-eyes rule, and write the audit rows."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from django.contrib import messages
from django.db import connection
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect, render
from django.urls import reverse

from config.errors import ApplicationError
from marketplace.models import Order, Refund
from marketplace.services.refunds import (
    refund_approve,
    refund_issue,
    refund_preview,
    refund_reject,
)
from staff import selectors
from staff.tokens import token_claim, token_done, token_issue, token_release
from staff.views.base import (
    AmountError,
    StaffView,
    amount_parse,
    amount_text,
    int_param,
    not_found,
)
from stripe_gateway.errors import PaymentProviderError

STRIPE_REASONS = [
    ("requested_by_customer", "Requested by the customer"),
    ("duplicate", "Duplicate charge"),
    ("fraudulent", "Fraudulent"),
]
BEARERS = Refund.Bearer.choices
TERMINAL = {Refund.Status.SUCCEEDED, Refund.Status.FAILED, Refund.Status.REJECTED}


@contextmanager
def order_refund_guard(order_id: int) -> Iterator[None]:
    """Serialize dashboard refunds of one order (a PostgreSQL session advisory lock, held
    across the "nothing changed since your preview" check and the service call), so that of
    two agents confirming at once the second sees the first's refund and is asked to look
    again. The service's own lock and checks still guard every other path (the API)."""
    if connection.vendor != "postgresql":
        yield
        return
    key = f"staff-refund:{order_id}"
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_advisory_lock(hashtext(%s))", [key])
    try:
        yield
    finally:
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_unlock(hashtext(%s))", [key])


def _form_values(data: Any, order: Order) -> dict[str, Any]:
    return {
        "amount": str(data.get("amount", "")).strip()[:32],
        "reason": data.get("reason", "requested_by_customer"),
        "note": str(data.get("note", "")).strip()[:400],
        "bearer": data.get("bearer", Refund.Bearer.PLATFORM),
        "restaurant_share": str(data.get("restaurant_share", "")).strip()[:16],
        "rider_share": str(data.get("rider_share", "")).strip()[:16],
    }


class RefundDialogView(StaffView):
    """GET: the form. POST action=preview: the dry run's postings and a confirmation form
    carrying a one-time token. POST action=confirm: the refund, once."""

    permissions = ("marketplace.view_order", "marketplace.request_refund")

    def _page(
        self, request: HttpRequest, order: Order, values: dict[str, Any], **extra: Any
    ) -> HttpResponse:
        status = extra.pop("status", 200)
        context = {
            "order": order,
            "values": values,
            "refundable": order.refundable,
            "refundable_text": amount_text(order.refundable, asset=order.asset),
            "reasons": STRIPE_REASONS,
            "bearers": BEARERS,
            **extra,
        }
        return render(request, "staff/refund_dialog.html", context, status=status)

    def _order(self, order_id: int) -> Order | None:
        return selectors.order_get(order_id=order_id)

    def get(self, request: HttpRequest, order_id: int) -> HttpResponse:
        order = self._order(order_id)
        if order is None:
            return not_found(request, f"There is no order {order_id}.")
        values = _form_values({}, order)
        values["amount"] = amount_text(order.refundable, asset=order.asset)
        error = ""
        if order.status not in (Order.Status.PAID, Order.Status.DELIVERED):
            error = f"Order {order.pk} is {order.status}: nothing was paid to refund."
        elif order.refundable <= 0:
            error = f"Order {order.pk} has nothing left to refund."
        return self._page(request, order, values, error=error)

    def _parse(self, values: dict[str, Any], order: Order) -> dict[str, Any]:
        """The service's arguments from the form, or raises AmountError / ApplicationError."""
        if values["reason"] not in dict(STRIPE_REASONS):
            raise AmountError("Choose a reason.")
        if values["bearer"] not in Refund.Bearer.values:
            raise AmountError("Choose who bears the refund.")
        amount = amount_parse(values["amount"], asset=order.asset)
        shared = values["bearer"] == Refund.Bearer.SHARED
        return {
            "order_id": order.pk,
            "amount": amount,
            "bearer": values["bearer"],
            "restaurant_share": (values["restaurant_share"] or "0%") if shared else None,
            "rider_share": (values["rider_share"] or "0%") if shared else None,
        }

    def post(self, request: HttpRequest, order_id: int) -> HttpResponse:
        order = self._order(order_id)
        if order is None:
            return not_found(request, f"There is no order {order_id}.")
        values = _form_values(request.POST, order)
        try:
            args = self._parse(values, order)
            if request.POST.get("action") == "confirm":
                # The service validates again under the order's lock; the guard first tells
                # an agent whose preview another refund has overtaken.
                return self._confirm(request, order, values, args)
            preview = refund_preview(**args)
        except (AmountError, ApplicationError) as exc:
            return self._page(
                request, order, values, error=getattr(exc, "message", str(exc)), status=400
            )
        token = token_issue(user=request.user, purpose=f"refund:order:{order.pk}")
        return self._page(
            request,
            order,
            values,
            preview=preview,
            amount_minor=args["amount"],
            token=token,
            seen_refunded=order.amount_refunded,
        )

    def _confirm(
        self, request: HttpRequest, order: Order, values: dict[str, Any], args: dict[str, Any]
    ) -> HttpResponse:
        token = str(request.POST.get("token", ""))
        claim = token_claim(token=token, user=request.user, purpose=f"refund:order:{order.pk}")
        if not claim.ok:
            first = Refund.objects.filter(order=order, request_key=token).first() if token else None
            if first is not None:
                messages.warning(request, claim.reason)
                return redirect("staff:refund", first.pk)
            return self._page(request, order, values, error=claim.reason, status=409)
        reason = values["reason"] + (f": {values['note']}" if values["note"] else "")
        with order_refund_guard(order.pk):
            current = Order.objects.filter(pk=order.pk).values_list("amount_refunded", flat=True)
            seen = int_param(request.POST.get("seen_refunded", "")) or 0
            if current.first() != seen:
                token_release(token=token)
                order.refresh_from_db()
                latest = Refund.objects.filter(order=order).order_by("-id").first()
                who = (
                    latest.requested_by.get_username()
                    if latest is not None and latest.requested_by
                    else "someone"
                )
                return self._page(
                    request,
                    order,
                    values,
                    error=(
                        f"Another refund was made on this order since your preview (by {who}): "
                        f"{amount_text(order.refundable, asset=order.asset)} is refundable now. "
                        "Nothing was refunded by you: review the order and preview again."
                    ),
                    status=409,
                )
            refund: Refund | None
            try:
                refund = refund_issue(
                    **args, reason=reason, requested_by=request.user, request_key=token
                )
            except PaymentProviderError as exc:
                refund = Refund.objects.filter(order=order, request_key=token).first()
                if refund is None:
                    token_release(token=token)
                    return self._page(request, order, values, error=exc.message, status=502)
                messages.warning(
                    request,
                    f"Stripe did not confirm yet ({exc.code}): the refund is recorded and will "
                    "be sent again with the same key; its status below updates by itself.",
                )
            except ApplicationError as exc:
                token_release(token=token)
                order.refresh_from_db()
                return self._page(request, order, values, error=exc.message, status=400)
        assert refund is not None
        url = reverse("staff:refund", args=[refund.pk])
        token_done(token=token, result_url=url)
        if refund.status == Refund.Status.AWAITING_APPROVAL:
            messages.info(
                request,
                f"Refund {refund.pk} awaits the approval of a second person "
                "(marketplace.approve_refund): nothing was sent to Stripe yet.",
            )
        else:
            messages.success(request, f"Refund {refund.pk} was sent to Stripe.")
        return redirect(url)


def _refund_get(refund_id: int) -> Refund | None:
    if not 0 < refund_id < 2**63:
        return None
    return (
        Refund.objects.select_related("order", "order__customer", "requested_by", "decided_by")
        .filter(pk=refund_id)
        .first()
    )


def refund_status_dict(refund: Refund) -> dict[str, Any]:
    return {
        "id": refund.pk,
        "status": refund.status,
        "label": refund.get_status_display(),
        "terminal": refund.status in TERMINAL,
        "stripe_refund_id": refund.stripe_refund_id,
        "failure_reason": refund.failure_reason,
    }


class RefundView(StaffView):
    permissions = ("marketplace.view_refund",)

    def get(self, request: HttpRequest, refund_id: int) -> HttpResponse:
        refund = _refund_get(refund_id)
        if refund is None:
            return not_found(request, f"There is no refund {refund_id}.")
        return render(
            request,
            "staff/refund.html",
            {
                "refund": refund,
                "state": refund_status_dict(refund),
                "awaiting": refund.status == Refund.Status.AWAITING_APPROVAL,
                "can_decide": request.user.has_perm("marketplace.approve_refund"),
                "steps": ["awaiting_approval", "pending", "submitted", "succeeded"],
            },
        )


class RefundStatusView(StaffView):
    """The small JSON the refund page polls (no reload needed to see it move)."""

    permissions = ("marketplace.view_refund",)

    def get(self, request: HttpRequest, refund_id: int) -> HttpResponse:
        refund = _refund_get(refund_id)
        if refund is None:
            return JsonResponse({"code": "not_found", "message": "No such refund."}, status=404)
        return JsonResponse(refund_status_dict(refund))


class ApprovalsView(StaffView):
    permissions = ("marketplace.view_refund",)

    def get(self, request: HttpRequest) -> HttpResponse:
        page = selectors.refunds_awaiting_page(before=int_param(request.GET.get("before")))
        return render(request, "staff/approvals.html", {"page": page})


class RefundDecideView(StaffView):
    """GET: what approving (or rejecting) will do, with a one-time token. POST: do it."""

    permissions = ("marketplace.view_refund", "marketplace.approve_refund")
    decision = "approve"

    def _page(self, request: HttpRequest, refund: Refund, **extra: Any) -> HttpResponse:
        status = extra.pop("status", 200)
        return render(
            request,
            "staff/refund_decide.html",
            {"refund": refund, "decision": self.decision, **extra},
            status=status,
        )

    def get(self, request: HttpRequest, refund_id: int) -> HttpResponse:
        refund = _refund_get(refund_id)
        if refund is None:
            return not_found(request, f"There is no refund {refund_id}.")
        error = ""
        if refund.status != Refund.Status.AWAITING_APPROVAL:
            error = f"Refund {refund.pk} is {refund.get_status_display().lower()}: there is nothing to decide."
        token = token_issue(user=request.user, purpose=f"refund.{self.decision}:{refund.pk}")
        return self._page(request, refund, token=token, error=error)

    def post(self, request: HttpRequest, refund_id: int) -> HttpResponse:
        refund = _refund_get(refund_id)
        if refund is None:
            return not_found(request, f"There is no refund {refund_id}.")
        note = str(request.POST.get("reason", "")).strip()[:500]
        if self.decision == "reject" and not note:
            token = str(request.POST.get("token", ""))
            return self._page(
                request, refund, token=token, error="A rejection needs a reason.", status=400
            )
        token = str(request.POST.get("token", ""))
        claim = token_claim(
            token=token, user=request.user, purpose=f"refund.{self.decision}:{refund.pk}"
        )
        url = reverse("staff:refund", args=[refund.pk])
        if not claim.ok:
            messages.warning(request, claim.reason)
            return redirect(claim.result_url or url)
        try:
            if self.decision == "approve":
                refund = refund_approve(refund_id=refund.pk, actor=request.user, note=note)
            else:
                refund = refund_reject(refund_id=refund.pk, actor=request.user, reason=note)
        except PaymentProviderError as exc:
            messages.warning(
                request,
                f"Approved; Stripe did not confirm yet ({exc.code}): the refund will be sent "
                "again with the same key.",
            )
        except ApplicationError as exc:
            token_release(token=token)
            refund.refresh_from_db()
            return self._page(
                request, refund, token=token, error=exc.message, status=exc.http_status
            )
        token_done(token=token, result_url=url)
        verb = "approved" if self.decision == "approve" else "rejected"
        messages.success(request, f"Refund {refund.pk} {verb}.")
        return redirect(url)
