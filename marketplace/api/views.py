"""Views of the marketplace API. Each parses its input, calls one service or selector, and
shapes the answer."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema, inline_serializer
from rest_framework import serializers, status
from rest_framework.generics import ListAPIView
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from config.input import choice_param, instant_param
from config.permissions import NamedPermissions
from ledger.selectors import balance_sheet_get
from marketplace import selectors
from marketplace.api import serializers as s
from marketplace.models import Anomaly, Campaign, Order, Refund, Restaurant, Rider, Topup
from marketplace.services import campaigns, orders, parties, refunds, treasury
from marketplace.services.errors import NotFound

AT_PARAM = OpenApiParameter(
    "at", OpenApiTypes.DATETIME, description="an instant in the past (ISO-8601 with zone)"
)
ASSET_PARAM = OpenApiParameter("asset", OpenApiTypes.STR, description="default USD/2")


def _at(request: Request) -> datetime | None:
    return instant_param(request.query_params, "at")


def _get(model: Any, pk: int) -> Any:
    obj = model.objects.filter(pk=pk).first()
    if obj is None:
        raise NotFound(f"{model.__name__} {pk} does not exist.")
    return obj


def _valid(serializer_class: type[serializers.Serializer], request: Request) -> dict[str, Any]:
    serializer = serializer_class(data=request.data)
    serializer.is_valid(raise_exception=True)
    return dict(serializer.validated_data)


def _payment_intent(intent: dict[str, Any]) -> dict[str, Any]:
    keys = ("id", "client_secret", "status", "amount", "currency", "transfer_group")
    return {key: intent.get(key) for key in keys}


class StaffView(APIView):
    """Reads: a staff user or the view's `read_permissions`; writes: the named permission each
    method declares in `required_permissions` (config.permissions)."""

    permission_classes = [NamedPermissions]
    read_permissions: tuple[str, ...] = ("marketplace.view_order",)
    required_permissions: dict[str, tuple[str, ...]] = {}


# --- restaurants and riders ----------------------------------------------------------------------


class RestaurantsView(StaffView):
    required_permissions = {"POST": ("marketplace.manage_payees",)}
    read_permissions = ("marketplace.view_restaurant",)

    @extend_schema(responses=s.RestaurantOutput(many=True))
    def get(self, request: Request) -> Response:
        return Response(s.RestaurantOutput(Restaurant.objects.order_by("id"), many=True).data)

    @extend_schema(request=s.RestaurantCreateInput, responses={201: s.RestaurantOutput})
    def post(self, request: Request) -> Response:
        data = _valid(s.RestaurantCreateInput, request)
        restaurant = parties.restaurant_onboard(**data)
        return Response(s.RestaurantOutput(restaurant).data, status=status.HTTP_201_CREATED)


class RestaurantDetailView(StaffView):
    read_permissions = ("marketplace.view_restaurant",)

    @extend_schema(responses=s.RestaurantOutput)
    def get(self, request: Request, pk: int) -> Response:
        return Response(s.RestaurantOutput(_get(Restaurant, pk)).data)


class RestaurantCommissionView(StaffView):
    required_permissions = {"POST": ("marketplace.manage_payees",)}

    @extend_schema(request=s.CommissionInput, responses=s.RestaurantOutput)
    def post(self, request: Request, pk: int) -> Response:
        data = _valid(s.CommissionInput, request)
        _get(Restaurant, pk)
        restaurant = parties.restaurant_commission_set(
            restaurant_id=pk, commission=data["commission"], actor=request.user
        )
        return Response(s.RestaurantOutput(restaurant).data)


class RidersView(StaffView):
    required_permissions = {"POST": ("marketplace.manage_payees",)}
    read_permissions = ("marketplace.view_rider",)

    @extend_schema(responses=s.RiderOutput(many=True))
    def get(self, request: Request) -> Response:
        return Response(s.RiderOutput(Rider.objects.order_by("id"), many=True).data)

    @extend_schema(request=s.RiderCreateInput, responses={201: s.RiderOutput})
    def post(self, request: Request) -> Response:
        rider = parties.rider_onboard(**_valid(s.RiderCreateInput, request))
        return Response(s.RiderOutput(rider).data, status=status.HTTP_201_CREATED)


class RiderDetailView(StaffView):
    read_permissions = ("marketplace.view_rider",)

    @extend_schema(responses=s.RiderOutput)
    def get(self, request: Request, pk: int) -> Response:
        return Response(s.RiderOutput(_get(Rider, pk)).data)


class PayeeBalanceView(StaffView):
    """`GET /restaurants/<id>/balance/`: available for payout (and in flight)."""

    read_permissions = ("marketplace.view_restaurant", "marketplace.view_rider")

    model: type[Restaurant] | type[Rider] = Restaurant

    @extend_schema(parameters=[AT_PARAM], responses=s.PayeeBalanceOutput)
    def get(self, request: Request, pk: int) -> Response:
        payee = _get(self.model, pk)
        balance = selectors.payee_balance_get(payee=payee, at=_at(request))
        return Response(s.PayeeBalanceOutput(balance).data)


# --- orders --------------------------------------------------------------------------------------


class OrdersView(ListAPIView, StaffView):
    required_permissions = {"POST": ("marketplace.manage_orders",)}
    serializer_class = s.OrderOutput

    def get_queryset(self) -> Any:
        qs = Order.objects.select_related("campaign").order_by("-id")
        wanted = choice_param(self.request.query_params, "status", Order.Status.values)
        if wanted:
            qs = qs.filter(status=wanted)
        return qs

    @extend_schema(
        parameters=[OpenApiParameter("status", OpenApiTypes.STR, enum=Order.Status.values)],
        responses=s.OrderOutput(many=True),
    )
    def get(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        return super().get(request, *args, **kwargs)

    @extend_schema(request=s.OrderCreateInput, responses={201: s.OrderCreatedOutput})
    def post(self, request: Request) -> Response:
        data = _valid(s.OrderCreateInput, request)
        order, intent = orders.order_place(
            restaurant_id=data["restaurant"],
            subtotal=data["subtotal"],
            delivery_fee=data["delivery_fee"],
            coupon_code=data["coupon"] or None,
            customer_email=data["customer_email"],
            customer_name=data["customer_name"],
        )
        return Response(
            {"order": s.OrderOutput(order).data, "payment_intent": _payment_intent(intent)},
            status=status.HTTP_201_CREATED,
        )


class OrderDetailView(StaffView):
    @extend_schema(responses=s.OrderOutput)
    def get(self, request: Request, pk: int) -> Response:
        return Response(s.OrderOutput(orders.order_get(order_id=pk)).data)


class OrderPaymentIntentView(StaffView):
    """Retry creating the PaymentIntent after a retryable Stripe error (same key)."""

    required_permissions = {"POST": ("marketplace.manage_orders",)}

    @extend_schema(request=None, responses=s.OrderCreatedOutput)
    def post(self, request: Request, pk: int) -> Response:
        intent = orders.order_payment_intent_create(order_id=pk)
        order = orders.order_get(order_id=pk)
        return Response(
            {"order": s.OrderOutput(order).data, "payment_intent": _payment_intent(intent)}
        )


class OrderAssignRiderView(StaffView):
    required_permissions = {"POST": ("marketplace.manage_orders",)}

    @extend_schema(request=s.RiderAssignInput, responses=s.OrderOutput)
    def post(self, request: Request, pk: int) -> Response:
        data = _valid(s.RiderAssignInput, request)
        orders.order_rider_assign(order_id=pk, rider_id=data["rider"], actor=str(request.user))
        return Response(s.OrderOutput(orders.order_get(order_id=pk)).data)


class OrderDeliverView(StaffView):
    required_permissions = {"POST": ("marketplace.manage_orders",)}

    @extend_schema(request=s.DeliverInput, responses=s.OrderOutput)
    def post(self, request: Request, pk: int) -> Response:
        data = _valid(s.DeliverInput, request)
        # The order as the delivery committed it (read under its lock): not read again.
        order = orders.order_deliver(
            order_id=pk, rider_id=data.get("rider"), actor=str(request.user)
        )
        return Response(s.OrderOutput(order).data)


class OrderCancelView(StaffView):
    required_permissions = {"POST": ("marketplace.manage_orders",)}

    @extend_schema(request=None, responses=s.OrderOutput)
    def post(self, request: Request, pk: int) -> Response:
        orders.order_cancel(order_id=pk, actor=str(request.user), note="canceled by staff")
        return Response(s.OrderOutput(orders.order_get(order_id=pk)).data)


class OrderRefundsView(StaffView):
    required_permissions = {"POST": ("marketplace.request_refund",)}
    read_permissions = ("marketplace.view_order", "marketplace.view_refund")

    @extend_schema(responses=s.RefundOutput(many=True))
    def get(self, request: Request, pk: int) -> Response:
        orders.order_get(order_id=pk)
        return Response(s.RefundOutput(Refund.objects.filter(order_id=pk), many=True).data)

    @extend_schema(request=s.RefundCreateInput, responses={201: s.RefundOutput})
    def post(self, request: Request, pk: int) -> Response:
        data = _valid(s.RefundCreateInput, request)
        refund = refunds.refund_issue(
            order_id=pk,
            amount=data["amount"],
            bearer=data["bearer"],
            restaurant_share=data.get("restaurant_share"),
            rider_share=data.get("rider_share"),
            reason=data["reason"],
            requested_by=request.user,
            request_key=data["idempotency_key"],
        )
        return Response(s.RefundOutput(refund).data, status=status.HTTP_201_CREATED)


class RefundDetailView(StaffView):
    read_permissions = ("marketplace.view_refund",)

    @extend_schema(responses=s.RefundOutput)
    def get(self, request: Request, pk: int) -> Response:
        return Response(s.RefundOutput(_get(Refund, pk)).data)


class RefundApproveView(StaffView):
    """Four-eyes: a different user approves a refund awaiting approval; it goes to Stripe."""

    required_permissions = {"POST": ("marketplace.approve_refund",)}

    @extend_schema(request=s.RefundDecisionInput, responses=s.RefundOutput)
    def post(self, request: Request, pk: int) -> Response:
        data = _valid(s.RefundDecisionInput, request)
        refund = refunds.refund_approve(refund_id=pk, actor=request.user, note=data["note"])
        return Response(s.RefundOutput(refund).data)


class RefundRejectView(StaffView):
    required_permissions = {"POST": ("marketplace.approve_refund",)}

    @extend_schema(request=s.RefundRejectInput, responses=s.RefundOutput)
    def post(self, request: Request, pk: int) -> Response:
        data = _valid(s.RefundRejectInput, request)
        refund = refunds.refund_reject(refund_id=pk, actor=request.user, reason=data["reason"])
        return Response(s.RefundOutput(refund).data)


# --- campaigns and top-ups -----------------------------------------------------------------------


class CampaignsView(StaffView):
    required_permissions = {"POST": ("marketplace.manage_campaigns",)}
    read_permissions = ("marketplace.view_campaign",)

    @extend_schema(responses=s.CampaignOutput(many=True))
    def get(self, request: Request) -> Response:
        return Response(s.CampaignOutput(Campaign.objects.order_by("id"), many=True).data)

    @extend_schema(request=s.CampaignCreateInput, responses={201: s.CampaignOutput})
    def post(self, request: Request) -> Response:
        campaign = campaigns.campaign_create(
            **_valid(s.CampaignCreateInput, request), actor=request.user
        )
        return Response(s.CampaignOutput(campaign).data, status=status.HTTP_201_CREATED)


class CampaignDetailView(StaffView):
    read_permissions = ("marketplace.view_campaign",)

    @extend_schema(responses=s.CampaignOutput)
    def get(self, request: Request, pk: int) -> Response:
        return Response(s.CampaignOutput(campaigns.campaign_get(campaign_id=pk)).data)


class CampaignFundView(StaffView):
    required_permissions = {"POST": ("marketplace.manage_campaigns",)}

    @extend_schema(request=s.AmountInput, responses={201: s.CampaignOutput})
    def post(self, request: Request, pk: int) -> Response:
        data = _valid(s.AmountInput, request)
        campaigns.campaign_fund(campaign_id=pk, amount=data["amount"], requested_by=request.user)
        campaign = campaigns.campaign_get(campaign_id=pk)
        return Response(s.CampaignOutput(campaign).data, status=status.HTTP_201_CREATED)


class CampaignPauseView(StaffView):
    required_permissions = {"POST": ("marketplace.manage_campaigns",)}
    paused = True

    @extend_schema(request=None, responses=s.CampaignOutput)
    def post(self, request: Request, pk: int) -> Response:
        campaign = campaigns.campaign_pause(campaign_id=pk, paused=self.paused, actor=request.user)
        return Response(s.CampaignOutput(campaign).data)


class CampaignCloseView(StaffView):
    required_permissions = {"POST": ("marketplace.manage_campaigns",)}

    @extend_schema(request=None, responses=s.CampaignOutput)
    def post(self, request: Request, pk: int) -> Response:
        campaign = campaigns.campaign_close(campaign_id=pk, actor=request.user)
        return Response(s.CampaignOutput(campaign).data)


class TopupsView(StaffView):
    required_permissions = {"POST": ("marketplace.create_topup",)}
    read_permissions = ("marketplace.view_topup",)

    @extend_schema(responses=s.TopupOutput(many=True))
    def get(self, request: Request) -> Response:
        return Response(s.TopupOutput(Topup.objects.order_by("-id")[:100], many=True).data)

    @extend_schema(request=s.TopupCreateInput, responses={201: s.TopupOutput})
    def post(self, request: Request) -> Response:
        data = _valid(s.TopupCreateInput, request)
        topup = treasury.topup_create(requested_by=request.user, **data)
        return Response(s.TopupOutput(topup).data, status=status.HTTP_201_CREATED)


# --- the books -----------------------------------------------------------------------------------


class PayeesBooksView(StaffView):
    @extend_schema(
        parameters=[
            OpenApiParameter("kind", OpenApiTypes.STR, enum=["restaurant", "rider"]),
            AT_PARAM,
        ],
        responses=s.PayeeBalanceOutput(many=True),
    )
    def get(self, request: Request) -> Response:
        kind = choice_param(request.query_params, "kind", ("restaurant", "rider")) or "restaurant"
        rows = selectors.payee_balances_list(kind=kind, at=_at(request))  # type: ignore[arg-type]
        return Response(s.PayeeBalanceOutput(rows, many=True).data)


OWED_SHAPE = inline_serializer(
    "Owed",
    {
        "asset": serializers.CharField(),
        "at": serializers.DateTimeField(allow_null=True),
        "owed": serializers.IntegerField(),
        "receivable": serializers.IntegerField(),
        "groups": serializers.ListField(child=serializers.DictField()),
    },
)


def _owed_data(owed: selectors.Owed) -> dict[str, Any]:
    return {
        "asset": owed.asset,
        "at": owed.at,
        "owed": owed.owed,
        "receivable": owed.receivable,
        "groups": [
            {
                "name": g.name,
                "accounts": g.accounts,
                "owed": g.owed,
                "receivable": g.receivable,
                "net": g.net,
                "counts_for_risk": g.counts_for_risk,
            }
            for g in owed.groups
        ],
    }


class OwedView(StaffView):
    @extend_schema(parameters=[AT_PARAM, ASSET_PARAM], responses=OWED_SHAPE)
    def get(self, request: Request) -> Response:
        asset = request.query_params.get("asset", "USD/2")
        return Response(_owed_data(selectors.owed_get(asset=asset, at=_at(request))))


class BalanceSheetView(StaffView):
    @extend_schema(parameters=[AT_PARAM], responses=OpenApiTypes.OBJECT)
    def get(self, request: Request) -> Response:
        sheet = balance_sheet_get(at=_at(request))
        return Response(
            {
                "at": sheet.at,
                "balanced": sheet.balanced,
                "assets": [
                    {
                        "asset": a.asset,
                        "balanced": a.balanced,
                        "totals": a.totals,
                        "net_income": a.net_income,
                        "liabilities_and_equity": a.liabilities_and_equity,
                        "lines": [
                            {"address": x.address, "type": x.type, "amount": x.amount}
                            for x in a.lines
                        ],
                    }
                    for a in sheet.assets
                ],
            }
        )


def risk_data(risk: selectors.Risk) -> dict[str, Any]:
    return {
        "asset": risk.asset,
        "at": risk.at,
        "stripe_balance": risk.stripe_balance,
        "owed_total": risk.owed_total,
        "shortfall": risk.shortfall,
        "covered": risk.covered,
        "coverage": None if risk.coverage is None else round(risk.coverage, 4),
        "losses": risk.losses,
        "open_disputes": risk.open_disputes,
        "owed": _owed_data(risk.owed),
        "campaigns": [c.__dict__ for c in risk.campaigns],
    }


class RiskView(StaffView):
    @extend_schema(parameters=[AT_PARAM, ASSET_PARAM], responses=OpenApiTypes.OBJECT)
    def get(self, request: Request) -> Response:
        asset = request.query_params.get("asset", "USD/2")
        return Response(risk_data(selectors.risk_get(asset=asset, at=_at(request))))


class AnomaliesView(StaffView):
    @extend_schema(responses=s.AnomalyOutput(many=True))
    def get(self, request: Request) -> Response:
        rows = Anomaly.objects.filter(resolved=False).order_by("-id")[:200]
        return Response(
            [
                {
                    "id": a.pk,
                    "kind": a.kind,
                    "stripe_object": a.stripe_object,
                    "order": a.order_id,
                    "message": a.message,
                    "created_at": a.created_at,
                }
                for a in rows
            ]
        )
