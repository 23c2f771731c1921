"""Admin of the marketplace app. The Stripe inbox is read-only: its rows change only through
`marketplace.webhooks.services` (processing, `manage.py stripe_events replay`)."""

import json

from django.contrib import admin
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils.html import format_html

from marketplace.models import (
    Anomaly,
    Campaign,
    CampaignFunding,
    Customer,
    Dispute,
    Order,
    OrderStatusChange,
    Refund,
    Restaurant,
    Rider,
    StripeEvent,
    Topup,
)


@admin.register(StripeEvent)
class StripeEventAdmin(admin.ModelAdmin):
    list_display = ["stripe_id", "type", "status", "attempts", "account", "livemode", "created"]
    list_filter = ["status", "livemode"]  # not `type`: a DISTINCT over the whole inbox
    search_fields = ["stripe_id", "type", "account"]
    date_hierarchy = "received_at"
    ordering = ["-received_at"]
    list_per_page = 100
    show_full_result_count = False  # COUNT(*) on a large inbox is slow
    _FIELDS = (
        "stripe_id",
        "type",
        "status",
        "attempts",
        "last_error",
        "livemode",
        "account",
        "api_version",
        "created",
        "received_at",
        "processed_at",
        "next_attempt_at",
        "payload_pretty",
    )
    fields = _FIELDS
    readonly_fields = _FIELDS

    @admin.display(description="payload")
    def payload_pretty(self, obj: StripeEvent) -> str:
        return format_html("<pre>{}</pre>", json.dumps(obj.payload, indent=2, sort_keys=True))

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: StripeEvent | None = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: StripeEvent | None = None) -> bool:
        return False


# --- the money flows: read-mostly; money moves only through the services ---------------------


class ReadOnlyAdmin(admin.ModelAdmin):
    """Rows written by the marketplace services only: staff read them here."""

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False


@admin.register(Restaurant)
class RestaurantAdmin(ReadOnlyAdmin):
    list_display = ["id", "name", "commission", "stripe_account_id", "payouts_on_hold", "asset"]
    search_fields = ["name", "email", "stripe_account_id"]
    list_filter = ["payouts_on_hold"]


@admin.register(Rider)
class RiderAdmin(ReadOnlyAdmin):
    list_display = ["id", "name", "stripe_account_id", "payouts_on_hold", "asset"]
    search_fields = ["name", "email", "stripe_account_id"]
    list_filter = ["payouts_on_hold"]


@admin.register(Customer)
class CustomerAdmin(ReadOnlyAdmin):
    list_display = ["id", "name", "email", "stripe_customer_id"]
    search_fields = ["name", "email"]


class OrderStatusChangeInline(admin.TabularInline):
    model = OrderStatusChange
    extra = 0
    can_delete = False
    readonly_fields = ["from_status", "to_status", "actor", "note", "at"]

    def has_add_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False


@admin.register(Order)
class OrderAdmin(ReadOnlyAdmin):
    list_display = [
        "id",
        "status",
        "restaurant",
        "rider",
        "total",
        "discount",
        "amount_refunded",
        "payment_intent_id",
        "created_at",
    ]
    list_filter = ["status", "coupon_state"]
    search_fields = ["=id", "payment_intent_id", "charge_id"]
    list_select_related = ["restaurant", "rider"]
    inlines = [OrderStatusChangeInline]
    show_full_result_count = False


@admin.register(Refund)
class RefundAdmin(ReadOnlyAdmin):
    list_display = ["id", "order", "amount", "bearer", "source", "status", "stripe_refund_id"]
    list_filter = ["status", "bearer", "source"]
    search_fields = ["stripe_refund_id", "=order__id"]


@admin.register(Dispute)
class DisputeAdmin(ReadOnlyAdmin):
    list_display = ["stripe_dispute_id", "order", "amount", "fee", "bearer", "status"]
    list_filter = ["status", "bearer"]
    search_fields = ["stripe_dispute_id", "charge_id"]


@admin.register(Campaign)
class CampaignAdmin(ReadOnlyAdmin):
    list_display = ["code", "name", "budget", "funded", "percent_off", "per_order_cap", "paused"]
    list_filter = ["paused"]
    search_fields = ["code", "name"]


@admin.register(CampaignFunding)
class CampaignFundingAdmin(ReadOnlyAdmin):
    list_display = ["campaign", "n", "amount", "requested_by", "created_at"]


@admin.register(Topup)
class TopupAdmin(ReadOnlyAdmin):
    list_display = ["id", "amount", "status", "stripe_topup_id", "created_at"]
    list_filter = ["status"]


@admin.register(Anomaly)
class AnomalyAdmin(ReadOnlyAdmin):
    list_display = ["id", "kind", "stripe_object", "order", "resolved", "created_at"]
    list_filter = ["resolved", "kind"]
    search_fields = ["stripe_object", "stripe_event_id", "message"]
    actions = ["mark_resolved"]

    def has_change_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return bool(request.user.has_perm("marketplace.change_anomaly"))

    @admin.action(description="Mark resolved")
    def mark_resolved(self, request: HttpRequest, queryset: QuerySet[Anomaly]) -> None:
        queryset.filter(resolved=False).update(resolved=True, resolved_by=request.user)
