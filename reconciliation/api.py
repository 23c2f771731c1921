"""The reconciliation API (mounted at /api/v1/reconciliation/), read-only, staff only.

GET runs/                      runs, newest first (limit/offset), each with its summary
GET runs/<id>/                 one run's summary: counts and amounts per outcome, totals and
                               drift per asset, changes since the previous run, repairs
GET runs/<id>/items/           its items (?outcome=..., ?problems=1), paginated
GET runs/<id>/items.csv        the same as CSV, streamed (?outcome=..., ?problems=1)
"""

from __future__ import annotations

from typing import Any

from django.http import StreamingHttpResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from config.pagination import LimitOffsetPagination
from config.permissions import NamedPermissions
from reconciliation import selectors
from reconciliation.errors import ReconciliationError
from reconciliation.matching import Outcome
from reconciliation.models import ReconciliationItem


class ItemSerializer(serializers.ModelSerializer):
    class Meta:
        model = ReconciliationItem
        fields = ["id", *selectors.ITEM_FIELDS]
        read_only_fields = fields


class RunSummarySerializer(serializers.Serializer):
    """The shape of `selectors.run_summary` (documentation of the answer, never input)."""

    id = serializers.IntegerField()
    window = serializers.DictField(child=serializers.DateTimeField())
    status = serializers.CharField()
    trigger = serializers.CharField()
    started_at = serializers.DateTimeField()
    finished_at = serializers.DateTimeField(allow_null=True)
    grace_seconds = serializers.IntegerField()
    match_seconds = serializers.FloatField(allow_null=True)
    imported = serializers.DictField(child=serializers.IntegerField())
    items = serializers.IntegerField()
    counts = serializers.DictField(child=serializers.IntegerField())
    amounts = serializers.JSONField()
    problems = serializers.IntegerField()
    safe_repairs_pending = serializers.IntegerField()
    repairs = serializers.JSONField()
    totals = serializers.JSONField()
    changes = serializers.JSONField()
    previous_run = serializers.IntegerField(allow_null=True)
    error = serializers.CharField(allow_blank=True)
    clean = serializers.BooleanField()


_FILTERS = [
    OpenApiParameter("outcome", OpenApiTypes.STR, enum=[str(o) for o in Outcome]),
    OpenApiParameter("problems", OpenApiTypes.BOOL, description="only items needing action"),
]


def _filters(request: Request) -> dict[str, Any]:
    outcome = request.query_params.get("outcome") or None
    if outcome is not None and outcome not in {str(o) for o in Outcome}:
        raise ReconciliationError(
            f"Unknown outcome {outcome!r}.",
            code="invalid_outcome",
            extra={"outcomes": [str(o) for o in Outcome]},
        )
    problems = request.query_params.get("problems", "").lower() in ("1", "true", "yes")
    return {"outcome": outcome, "problems_only": problems}


class ReconciliationView(APIView):
    permission_classes = [NamedPermissions]
    read_permissions = ("reconciliation.view_reconciliationrun",)


class RunsView(ReconciliationView):
    pagination_class = LimitOffsetPagination

    @extend_schema(
        responses=RunSummarySerializer(many=True),
        summary="Reconciliation runs, newest first",
        operation_id="reconciliation_runs_list",
    )
    def get(self, request: Request) -> Response:
        paginator = self.pagination_class()
        page = paginator.paginate_queryset(selectors.runs_list(), request, view=self) or []
        return paginator.get_paginated_response([selectors.run_summary(run=r) for r in page])


class RunDetailView(ReconciliationView):
    @extend_schema(responses=RunSummarySerializer, summary="One run's summary")
    def get(self, request: Request, run_id: int) -> Response:
        return Response(selectors.run_summary(run=selectors.run_get(run_id=run_id)))


class RunItemsView(ReconciliationView):
    pagination_class = LimitOffsetPagination

    @extend_schema(parameters=_FILTERS, responses=ItemSerializer(many=True))
    def get(self, request: Request, run_id: int) -> Response:
        run = selectors.run_get(run_id=run_id)
        items = selectors.items_list(run=run, **_filters(request))
        paginator = self.pagination_class()
        page = paginator.paginate_queryset(items, request, view=self) or []
        return paginator.get_paginated_response(ItemSerializer(page, many=True).data)


class RunItemsCsvView(ReconciliationView):
    @extend_schema(
        parameters=_FILTERS,
        responses={(200, "text/csv"): OpenApiTypes.STR},
        operation_id="v1_reconciliation_runs_items_csv_retrieve",
    )
    def get(self, request: Request, run_id: int) -> StreamingHttpResponse:
        run = selectors.run_get(run_id=run_id)
        lines = selectors.items_csv_lines(run=run, **_filters(request))
        response = StreamingHttpResponse(lines, content_type="text/csv; charset=utf-8")
        response["Content-Disposition"] = f'attachment; filename="reconciliation-run-{run.pk}.csv"'
        return response
