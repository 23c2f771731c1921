"""Admin of the Stripe inbox. Read-only: its rows change only through
`stripe_gateway.services` (processing, `manage.py stripe_events replay`)."""

import json

from django.contrib import admin
from django.utils.html import format_html

from common.admin import ReadOnlyAdmin
from stripe_gateway.models import StripeEvent


@admin.register(StripeEvent)
class StripeEventAdmin(ReadOnlyAdmin):
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
