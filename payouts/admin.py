"""Admin of the payouts app: read-only views of payouts, their audit trail, holds and payee
counters. Rows change only through `payouts.services`; the admin actions below call them and
need the `payouts.manage_payouts` permission (not just `is_staff`)."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.db.models import QuerySet
from django.http import HttpRequest
from django.template.response import TemplateResponse

from common.admin import ReadOnlyAdmin
from config.admin_confirm import confirm_then_each
from ledger.domain import format_amount
from payouts import services
from payouts.models import PayeeHoldChange, Payout, PayoutEvent, PayoutPayee


class PayoutsReadOnlyAdmin(ReadOnlyAdmin):
    def has_manage_payouts_permission(self, request: HttpRequest) -> bool:
        return bool(request.user.has_perm("payouts.manage_payouts"))


class PayoutEventInline(admin.TabularInline):
    model = PayoutEvent
    fields = ("created_at", "from_state", "to_state", "why", "actor", "data")
    readonly_fields = ("created_at", "from_state", "to_state", "why", "actor", "data")
    extra = 0
    can_delete = False
    ordering = ["id"]

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


def _actor(request: HttpRequest) -> str:
    return f"staff:{request.user.get_username()}"


def _payout_line(payout: Payout, what: str) -> str:
    return (
        f"payout {payout.pk} ({payout.state}) of {format_amount(payout.asset, payout.amount)} "
        f"to {payout.payee_address}: {what}"
    )


@admin.register(Payout)
class PayoutAdmin(PayoutsReadOnlyAdmin):
    list_display = [
        "id",
        "payee_kind",
        "payee_id",
        "account",
        "asset",
        "amount",
        "state",
        "transfer_id",
        "attempts",
        "needs_attention",
        "created_at",
    ]
    list_filter = ["state", "payee_kind", "needs_attention"]
    search_fields = ["=id", "=transfer_id", "payee_address", "account", "destination"]
    date_hierarchy = "created_at"
    ordering = ["-created_at"]
    list_per_page = 100
    show_full_result_count = False
    inlines = [PayoutEventInline]
    actions = ["cancel_reserved", "retry_failed"]
    readonly_fields = [f.name for f in Payout._meta.concrete_fields]

    @admin.action(description="Cancel (reserved payouts only)", permissions=["manage_payouts"])
    def cancel_reserved(
        self, request: HttpRequest, queryset: QuerySet[Payout]
    ) -> TemplateResponse | None:
        return confirm_then_each(
            self,
            request,
            queryset,
            title="Cancel these payouts?",
            lines=[_payout_line(p, "returned to the payee's balance") for p in queryset],
            ask_reason=True,
            act=lambda p, reason: services.payout_cancel(
                payout_id=p.pk, reason=reason, actor=_actor(request)
            ),
            done="Cancelled {n} payout(s).",
        )

    @admin.action(description="Retry (failed payouts only)", permissions=["manage_payouts"])
    def retry_failed(
        self, request: HttpRequest, queryset: QuerySet[Payout]
    ) -> TemplateResponse | None:
        return confirm_then_each(
            self,
            request,
            queryset,
            title="Retry these payouts?",
            lines=[_payout_line(p, "returned, then paid out again") for p in queryset],
            act=lambda p, reason: services.payout_retry(payout_id=p.pk, actor=_actor(request)),
            done="Retried {n} payout(s).",
        )


@admin.register(PayoutPayee)
class PayoutPayeeAdmin(PayoutsReadOnlyAdmin):
    list_display = ["kind", "payee_id", "address", "last_seq", "created_at"]
    list_filter = ["kind"]
    search_fields = ["address"]
    actions = ["hold", "release"]

    @admin.action(description="Hold these payees' payouts", permissions=["manage_payouts"])
    def hold(
        self, request: HttpRequest, queryset: QuerySet[PayoutPayee]
    ) -> TemplateResponse | None:
        return confirm_then_each(
            self,
            request,
            queryset,
            title="Hold these payees' payouts?",
            lines=[
                f"{row.address}: no new payouts; its reserved payouts are cancelled and "
                "returned to its balance"
                for row in queryset
            ],
            ask_reason=True,
            act=lambda row, reason: services.payee_hold(
                kind=row.kind, payee_id=row.payee_id, reason=reason, actor=_actor(request)
            ),
            done="Held {n} payee(s).",
        )

    @admin.action(description="Release these payees' payouts", permissions=["manage_payouts"])
    def release(
        self, request: HttpRequest, queryset: QuerySet[PayoutPayee]
    ) -> TemplateResponse | None:
        return confirm_then_each(
            self,
            request,
            queryset,
            title="Release these payees' payouts?",
            lines=[f"{row.address}: payouts resume at the next pass" for row in queryset],
            ask_reason=True,
            act=lambda row, reason: services.payee_release(
                kind=row.kind, payee_id=row.payee_id, reason=reason, actor=_actor(request)
            ),
            done="Released {n} payee(s).",
        )


@admin.register(PayeeHoldChange)
class PayeeHoldChangeAdmin(PayoutsReadOnlyAdmin):
    list_display = ["created_at", "payee_kind", "payee_id", "on_hold", "reason", "actor"]
    list_filter = ["on_hold", "payee_kind"]
    ordering = ["-id"]
