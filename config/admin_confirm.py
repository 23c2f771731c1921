"""Django's intermediate page for admin actions that move money: the first POST shows what
will happen and asks for confirmation (and, where asked, a reason); only the second POST,
carrying `confirmed=yes`, runs the action. The permission is checked by the action's
`permissions=[...]` on both posts."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.contrib.admin import helpers
from django.db.models import QuerySet
from django.http import HttpRequest
from django.template.response import TemplateResponse


def confirmation(
    modeladmin: admin.ModelAdmin,
    request: HttpRequest,
    queryset: QuerySet[Any],
    *,
    title: str,
    lines: list[str],
    ask_reason: bool = False,
) -> TemplateResponse | None:
    """None when the user confirmed (run the action); otherwise the page asking them to."""
    reason = request.POST.get("reason", "").strip()
    if request.POST.get("confirmed") == "yes" and (reason or not ask_reason):
        return None
    opts = modeladmin.model._meta
    context = {
        **modeladmin.admin_site.each_context(request),
        "title": title,
        "lines": lines,
        "queryset": queryset,
        "opts": opts,
        "action": request.POST.get("action", ""),
        "action_checkbox_name": helpers.ACTION_CHECKBOX_NAME,
        "ask_reason": ask_reason,
        "reason": reason,
        "reason_missing": request.POST.get("confirmed") == "yes" and ask_reason and not reason,
    }
    return TemplateResponse(request, "admin/confirm_money_action.html", context)
