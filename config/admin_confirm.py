"""Django's intermediate page for admin actions that move money: the first POST shows what
will happen and asks for confirmation (and, where asked, a reason); only the second POST,
carrying `confirmed=yes`, runs the action. The permission is checked by the action's
`permissions=[...]` on both posts."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.db.models import QuerySet
from django.http import HttpRequest
from django.template.response import TemplateResponse

from config.errors import ApplicationError


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


def confirm_then_each(
    modeladmin: admin.ModelAdmin,
    request: HttpRequest,
    queryset: QuerySet[Any],
    *,
    title: str,
    lines: list[str],
    act: Callable[[Any, str], object],
    done: str,
    ask_reason: bool = False,
) -> TemplateResponse | None:
    """An admin action that moves money: the confirmation page (see `confirmation`) until the
    user confirms, then `act(row, reason)` for each selected row (the reason is "" unless
    asked for). One message counts what was done (`done`, e.g. "Cancelled {n} payout(s).");
    each row refused with an ApplicationError gets its own error message."""
    page = confirmation(
        modeladmin, request, queryset, title=title, lines=lines, ask_reason=ask_reason
    )
    if page is not None:
        return page
    reason = request.POST.get("reason", "").strip()[:500] if ask_reason else ""
    count, failed = 0, []
    for row in queryset:
        try:
            act(row, reason)
            count += 1
        except ApplicationError as exc:
            failed.append(f"{row}: {exc.message}")
    if count:
        modeladmin.message_user(request, done.format(n=count), messages.SUCCESS)
    for line in failed:
        modeladmin.message_user(request, line, messages.ERROR)
    return None
