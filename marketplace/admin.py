"""Admin of the marketplace app (the Stripe inbox's admin is in `stripe_gateway.admin`)."""

from django.contrib import admin
from django.db.models import QuerySet
from django.http import HttpRequest

from common.admin import ReadOnlyAdmin
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
    Topup,
)

# --- the money flows: read-mostly; money moves only through the services ---------------------


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
