"""The payouts REST API (mounted at /api/v1/payouts/). Thin: parse, call one service or
selector, shape. Reads need a staff user or `payouts.view_payout`; operations that move money
(hold, release, cancel, retry, reverse, run a pass) need the `payouts.manage_payouts`
permission (config.permissions.NamedPermissions; `is_staff` alone is not enough). Errors are
`ApplicationError`s rendered as `{"code", "message", ...}` by config.api.exception_handler."""

from __future__ import annotations

from drf_spectacular.utils import OpenApiParameter, extend_schema, inline_serializer
from rest_framework import serializers, status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from config.input import choice_param, int_param
from config.pagination import LimitOffsetPagination
from config.permissions import NamedPermissions
from payouts import selectors, services
from payouts import serializers as s
from payouts.errors import PayeeNotFound
from payouts.models import PayeeKind
from payouts.transitions import State

_ERROR = inline_serializer(
    "PayoutErrorBody", {"code": serializers.CharField(), "message": serializers.CharField()}
)


_READ = ("payouts.view_payout",)
_MANAGE = {"POST": ("payouts.manage_payouts",)}


def _actor(request: Request) -> str:
    return f"staff:{request.user.get_username()}"


def _reason(request: Request) -> str:
    body = s.ReasonSerializer(data=request.data)
    body.is_valid(raise_exception=True)
    return str(body.validated_data["reason"])


def _kind(kind: str) -> str:
    if kind not in PayeeKind.values:
        raise PayeeNotFound(f"unknown payee kind {kind!r} (restaurant or rider)")
    return kind


class PayoutsView(APIView):
    permission_classes = [NamedPermissions]
    read_permissions = _READ
    pagination_class = LimitOffsetPagination

    @extend_schema(
        summary="List payouts, newest first",
        parameters=[
            OpenApiParameter("state", str, enum=State.values),
            OpenApiParameter("payee_kind", str, enum=PayeeKind.values),
            OpenApiParameter("payee_id", int),
            OpenApiParameter("needs_attention", bool),
        ],
        responses={200: s.PayoutSerializer(many=True)},
    )
    def get(self, request: Request) -> Response:
        params = request.query_params
        attention = choice_param(
            {k: str(v).lower() for k, v in params.items()},
            "needs_attention",
            ("true", "false", "1", "0"),
        )
        qs = selectors.payouts_list(
            state=choice_param(params, "state", State.values),
            payee_kind=choice_param(params, "payee_kind", PayeeKind.values),
            payee_id=int_param(params, "payee_id"),
            needs_attention=None if attention is None else attention in ("1", "true"),
        )
        paginator = self.pagination_class()
        page = paginator.paginate_queryset(qs, request, view=self) or []
        return paginator.get_paginated_response(s.PayoutSerializer(page, many=True).data)


class PayoutDetailView(APIView):
    permission_classes = [NamedPermissions]
    read_permissions = _READ

    @extend_schema(
        summary="One payout with its audit trail",
        responses={200: s.PayoutDetailSerializer, 404: _ERROR},
    )
    def get(self, request: Request, payout_id: str) -> Response:
        payout = selectors.payout_get(payout_id=payout_id)
        return Response(s.PayoutDetailSerializer(payout).data)


class PayoutCancelView(APIView):
    permission_classes = [NamedPermissions]
    read_permissions = _READ
    required_permissions = _MANAGE

    @extend_schema(
        summary="Cancel a reserved payout (the money goes back to the payee)",
        request=s.ReasonSerializer,
        responses={200: s.PayoutDetailSerializer, 404: _ERROR, 409: _ERROR},
    )
    def post(self, request: Request, payout_id: str) -> Response:
        payout = services.payout_cancel(
            payout_id=payout_id, reason=_reason(request), actor=_actor(request)
        )
        payout.refresh_from_db()
        return Response(s.PayoutDetailSerializer(payout).data)


class PayoutRetryView(APIView):
    permission_classes = [NamedPermissions]
    read_permissions = _READ
    required_permissions = _MANAGE

    @extend_schema(
        summary="Retry a failed payout: return it if needed, create a new one for the payee",
        request=None,
        responses={201: s.PayoutDetailSerializer, 404: _ERROR, 409: _ERROR},
    )
    def post(self, request: Request, payout_id: str) -> Response:
        new = services.payout_retry(payout_id=payout_id, actor=_actor(request))
        new.refresh_from_db()
        return Response(s.PayoutDetailSerializer(new).data, status=status.HTTP_201_CREATED)


class PayoutReverseView(APIView):
    permission_classes = [NamedPermissions]
    read_permissions = _READ
    required_permissions = _MANAGE

    @extend_schema(
        summary="Reverse a failed payout's transfer: the money comes back to the payee",
        description="For a failed payout whose transfer is still at the connected account "
        "(its bank payout failed). 409 when the payout is not such a payout or Stripe refuses; "
        "503 when Stripe's answer is unknown (call again: same idempotency key).",
        request=s.ReasonSerializer,
        responses={200: s.PayoutDetailSerializer, 404: _ERROR, 409: _ERROR, 503: _ERROR},
    )
    def post(self, request: Request, payout_id: str) -> Response:
        payout = services.payout_reverse(
            payout_id=payout_id, reason=_reason(request), actor=_actor(request)
        )
        return Response(s.PayoutDetailSerializer(payout).data)


class PayeeHoldView(APIView):
    permission_classes = [NamedPermissions]
    read_permissions = _READ
    required_permissions = _MANAGE
    hold = True

    @extend_schema(
        summary="Hold (or release) a payee's payouts",
        request=s.ReasonSerializer,
        responses={
            200: inline_serializer(
                "PayeeHoldResult",
                {
                    "payee_kind": serializers.CharField(),
                    "payee_id": serializers.IntegerField(),
                    "on_hold": serializers.BooleanField(),
                    "cancelled": serializers.ListField(child=serializers.UUIDField()),
                },
            ),
            404: _ERROR,
        },
    )
    def post(self, request: Request, kind: str, payee_id: int) -> Response:
        kind = _kind(kind)
        reason = _reason(request)
        cancelled = []
        if self.hold:
            payouts = services.payee_hold(
                kind=kind, payee_id=payee_id, reason=reason, actor=_actor(request)
            )
            cancelled = [str(p.pk) for p in payouts]
        else:
            services.payee_release(
                kind=kind, payee_id=payee_id, reason=reason, actor=_actor(request)
            )
        return Response(
            {"payee_kind": kind, "payee_id": payee_id, "on_hold": self.hold, "cancelled": cancelled}
        )


class PayeeReleaseView(PayeeHoldView):
    hold = False


class RunView(APIView):
    permission_classes = [NamedPermissions]
    read_permissions = _READ
    required_permissions = _MANAGE

    @extend_schema(
        summary="Run one scheduling pass now",
        request=s.RunSerializer,
        responses={200: s.ScheduleResultSerializer},
    )
    def post(self, request: Request) -> Response:
        body = s.RunSerializer(data=request.data or {})
        body.is_valid(raise_exception=True)
        result = services.payouts_schedule(
            kinds=body.validated_data.get("kinds"),
            min_amount=body.validated_data.get("min_amount"),
            actor=_actor(request),
        )
        return Response({**result.as_dict(), "payout_ids": [str(i) for i in result.created]})


class StatusView(APIView):
    permission_classes = [NamedPermissions]
    read_permissions = _READ

    @extend_schema(
        summary="Payouts per state, stuck ones, escalations", responses={200: s.StatusSerializer}
    )
    def get(self, request: Request) -> Response:
        status_ = selectors.status_get()
        return Response(
            {
                "states": {k: v["count"] for k, v in status_.by_state.items()},
                "amounts": status_.amounts,
                "stuck": s.PayoutSerializer(status_.stuck, many=True).data,
                "needs_attention": status_.needs_attention,
                "oldest_in_flight": status_.oldest_in_flight,
            }
        )
