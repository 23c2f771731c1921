"""Admin pages of reconciliation: runs (summary, totals, CSV, "apply safe repairs"), items
(filter by run, outcome, repair status) and the imported balance transactions. Everything is
read-only: runs and items change only through the services."""

from __future__ import annotations

import json

from django.contrib import admin, messages
from django.db.models import Count, QuerySet
from django.http import HttpRequest
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils.html import format_html

from common.admin import ReadOnlyAdmin
from config.admin_confirm import confirmation
from config.errors import ApplicationError
from reconciliation import selectors
from reconciliation.models import ReconciliationItem, ReconciliationRun, StripeBalanceTransaction
from reconciliation.services import run_repairs_apply


@admin.register(ReconciliationRun)
class ReconciliationRunAdmin(ReadOnlyAdmin):
    list_display = [
        "id",
        "window_start",
        "window_end",
        "status",
        "trigger",
        "problems",
        "outcome_counts",
        "started_at",
        "finished_at",
    ]
    list_filter = ["status", "trigger"]
    readonly_fields = ["summary_pretty", "links"]
    fields = ["links", "summary_pretty"]
    actions = ["apply_safe_repairs"]

    @admin.display(description="outcomes")
    def outcome_counts(self, obj: ReconciliationRun) -> str:
        return ", ".join(f"{k} {v}" for k, v in sorted((obj.counts or {}).items()))

    @admin.display(description="summary")
    def summary_pretty(self, obj: ReconciliationRun) -> str:
        text = json.dumps(selectors.run_summary(run=obj), indent=2)
        return format_html("<pre>{}</pre>", text)

    @admin.display(description="items")
    def links(self, obj: ReconciliationRun) -> str:
        items = reverse("admin:reconciliation_reconciliationitem_changelist")
        csv = reverse("reconciliation:run-items-csv", kwargs={"run_id": obj.pk})
        return format_html(
            '<a href="{}?run__id__exact={}">all items</a> · '
            '<a href="{}?run__id__exact={}&repair_status__exact=pending">safe repairs pending</a>'
            ' · <a href="{}">CSV</a>',
            items,
            obj.pk,
            items,
            obj.pk,
            csv,
        )

    def has_apply_repairs_permission(self, request: HttpRequest) -> bool:
        return bool(request.user.has_perm("reconciliation.apply_repairs"))

    @admin.action(
        description="Apply the safe repairs of the selected runs", permissions=["apply_repairs"]
    )
    def apply_safe_repairs(
        self, request: HttpRequest, queryset: QuerySet[ReconciliationRun]
    ) -> TemplateResponse | None:
        lines = []
        for run in queryset.order_by("id"):
            pending = (
                ReconciliationItem.objects.filter(
                    run=run, safe=True, repair_status=ReconciliationItem.RepairStatus.PENDING
                )
                .values_list("repair__action")
                .annotate(n=Count("id"))
                .order_by()
            )
            what = ", ".join(f"{n} x {action}" for action, n in sorted(pending)) or "nothing"
            lines.append(
                f"run {run.pk} ({run.window_start:%Y-%m-%d %H:%M} to "
                f"{run.window_end:%Y-%m-%d %H:%M}): {what} — each a ledger write"
            )
        page = confirmation(
            self, request, queryset, title="Apply safe reconciliation repairs?", lines=lines
        )
        if page is not None:
            return page
        for run in queryset.order_by("id"):
            try:
                report = run_repairs_apply(run=run, actor=request.user)
            except ApplicationError as exc:
                self.message_user(request, f"run {run.pk}: {exc.message}", messages.ERROR)
                continue
            self.message_user(
                request,
                f"run {run.pk}: {report.applied} repair(s) applied, {report.failed} failed; "
                "run the window again to confirm.",
                messages.WARNING if report.failed else messages.SUCCESS,
            )
        return None


@admin.register(ReconciliationItem)
class ReconciliationItemAdmin(ReadOnlyAdmin):
    list_display = [
        "id",
        "run",
        "outcome",
        "key",
        "asset",
        "stripe_net",
        "ledger_net",
        "difference",
        "repair_status",
        "suggested_action",
    ]
    list_filter = ["outcome", "repair_status", "safe"]
    search_fields = ["key", "balance_transactions", "ledger_transactions"]
    list_select_related = ["run"]
    show_full_result_count = False


@admin.register(StripeBalanceTransaction)
class StripeBalanceTransactionAdmin(ReadOnlyAdmin):
    list_display = [
        "id",
        "created",
        "reporting_category",
        "type",
        "source_id",
        "net",
        "fee",
        "asset",
    ]
    list_filter = ["reporting_category", "status", "asset"]
    search_fields = ["id", "source_id"]
    show_full_result_count = False
