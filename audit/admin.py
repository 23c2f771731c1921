"""The audit trail in the admin: read-only, searchable."""

from typing import Any

from django.contrib import admin
from django.http import HttpRequest

from audit.models import AuditEntry


@admin.register(AuditEntry)
class AuditEntryAdmin(admin.ModelAdmin):
    list_display = [
        "id",
        "at",
        "actor_label",
        "action",
        "object_type",
        "object_id",
        "amount",
        "asset",
        "via",
    ]
    list_filter = ["action", "via"]
    search_fields = ["actor_label", "object_id", "request_id"]
    show_full_result_count = False

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False
