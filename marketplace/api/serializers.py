"""Input and output shapes of the marketplace API."""

from __future__ import annotations

import re
from typing import Any

from django.core.validators import RegexValidator
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from config.serializers import FieldsOnce
from marketplace.models import Anomaly, Campaign, Order, Refund, Restaurant, Rider, Topup
from marketplace.models.campaigns import CODE_REGEX
from marketplace.models.restaurants import ASSET_REGEX, PORTION_REGEX
from marketplace.services.common import MAX_AMOUNT


def _db_regex(pattern: str, message: str) -> RegexValidator:
    """The database's CHECK (a PostgreSQL regex) as a validator: `$` there is the end of the
    string, so `\\Z` here (Python's `$` also matches before a final newline)."""
    anchored = pattern[:-1] + r"\Z" if pattern.endswith("$") else pattern
    return RegexValidator(re.compile(anchored), message)


# Each mirrors a CheckConstraint (the constraints stay as the second line).
ASSET = _db_regex(ASSET_REGEX, "Must be an asset like USD/2, EUR/2 or JPY (*_asset_valid).")
PORTION = _db_regex(PORTION_REGEX, "Must be a portion like 15%%, 12.5%% or 1/3.")
CAMPAIGN_CODE = _db_regex(
    CODE_REGEX, "Must be 2-32 capitals, digits, '_' or '-' (campaign_code_valid)."
)


def asset_field(**kwargs: Any) -> serializers.CharField:
    return serializers.CharField(
        max_length=32, required=False, default="USD/2", validators=[ASSET], **kwargs
    )


@extend_schema_field(OpenApiTypes.INT64)
class AmountField(serializers.Field):
    """An amount in minor units: a JSON integer only (no strings, floats or booleans)."""

    default_error_messages = {
        "invalid": "Must be an integer amount in minor units.",
        "range": "Must be between {low} and {high}.",
    }

    def __init__(self, *, allow_zero: bool = False, **kwargs: Any):
        self.allow_zero = allow_zero
        super().__init__(**kwargs)

    def to_internal_value(self, data: Any) -> int:
        if type(data) is not int:
            self.fail("invalid")
        low = 0 if self.allow_zero else 1
        if not low <= data <= MAX_AMOUNT:
            self.fail("range", low=low, high=MAX_AMOUNT)
        return int(data)

    def to_representation(self, value: int) -> int:
        return int(value)


# --- inputs ------------------------------------------------------------------------------------


class RestaurantCreateInput(FieldsOnce, serializers.Serializer):
    name = serializers.CharField(max_length=200)
    email = serializers.EmailField(required=False, default="")
    commission = serializers.CharField(
        max_length=16, required=False, default="15%", validators=[PORTION]
    )
    asset = asset_field()


class RiderCreateInput(FieldsOnce, serializers.Serializer):
    name = serializers.CharField(max_length=200)
    email = serializers.EmailField(required=False, default="")
    asset = asset_field()


class CommissionInput(FieldsOnce, serializers.Serializer):
    commission = serializers.CharField(max_length=16, validators=[PORTION])


class OrderCreateInput(FieldsOnce, serializers.Serializer):
    restaurant = serializers.IntegerField(min_value=1)
    subtotal = AmountField()
    delivery_fee = AmountField(allow_zero=True, required=False, default=0)
    coupon = serializers.CharField(max_length=32, required=False, allow_blank=True, default="")
    customer_email = serializers.EmailField(required=False, default="")
    customer_name = serializers.CharField(max_length=200, required=False, default="")


class RiderAssignInput(FieldsOnce, serializers.Serializer):
    rider = serializers.IntegerField(min_value=1)


class DeliverInput(FieldsOnce, serializers.Serializer):
    rider = serializers.IntegerField(min_value=1, required=False)


class RefundCreateInput(FieldsOnce, serializers.Serializer):
    amount = AmountField()
    bearer = serializers.ChoiceField(choices=Refund.Bearer.choices, default=Refund.Bearer.PLATFORM)
    restaurant_share = serializers.CharField(max_length=32, required=False, validators=[PORTION])
    rider_share = serializers.CharField(max_length=32, required=False, validators=[PORTION])
    reason = serializers.CharField(max_length=500, required=False, default="", allow_blank=True)
    idempotency_key = serializers.CharField(max_length=255, required=False, default="")


class CampaignCreateInput(FieldsOnce, serializers.Serializer):
    code = serializers.CharField(max_length=32)
    name = serializers.CharField(max_length=200, required=False, default="")
    budget = AmountField()
    per_order_cap = AmountField()
    percent_off = serializers.CharField(
        max_length=16, required=False, default="100%", validators=[PORTION]
    )
    asset = asset_field()
    starts_at = serializers.DateTimeField(required=False, default=None)
    ends_at = serializers.DateTimeField(required=False, default=None)

    def validate_code(self, value: str) -> str:
        CAMPAIGN_CODE(value.strip().upper())  # the service stores it upper-cased
        return value

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        # campaign_window_ordered; without starts_at the service starts it now.
        starts, ends = attrs.get("starts_at"), attrs.get("ends_at")
        if starts is not None and ends is not None and ends <= starts:
            raise serializers.ValidationError({"ends_at": ["Must be after starts_at."]})
        return attrs


class AmountInput(FieldsOnce, serializers.Serializer):
    amount = AmountField()


class TopupCreateInput(FieldsOnce, serializers.Serializer):
    amount = AmountField()
    asset = asset_field()
    description = serializers.CharField(max_length=255, required=False, default="")


# --- outputs -----------------------------------------------------------------------------------


class RestaurantOutput(FieldsOnce, serializers.ModelSerializer):
    ledger_address = serializers.CharField(read_only=True)

    class Meta:
        model = Restaurant
        fields = [
            "id",
            "name",
            "email",
            "commission",
            "asset",
            "stripe_account_id",
            "payouts_on_hold",
            "ledger_address",
            "created_at",
        ]


class RiderOutput(FieldsOnce, serializers.ModelSerializer):
    ledger_address = serializers.CharField(read_only=True)

    class Meta:
        model = Rider
        fields = [
            "id",
            "name",
            "email",
            "asset",
            "stripe_account_id",
            "payouts_on_hold",
            "ledger_address",
            "created_at",
        ]


class PayeeBalanceOutput(FieldsOnce, serializers.Serializer):
    kind = serializers.CharField()
    id = serializers.IntegerField()
    name = serializers.CharField()
    ledger_address = serializers.CharField()
    stripe_account_id = serializers.CharField()
    payouts_on_hold = serializers.BooleanField()
    asset = serializers.CharField()
    available = serializers.IntegerField()
    in_flight = serializers.IntegerField()


class RefundOutput(FieldsOnce, serializers.ModelSerializer):
    class Meta:
        model = Refund
        fields = [
            "id",
            "order",
            "amount",
            "asset",
            "bearer",
            "platform_share",
            "restaurant_share",
            "rider_share",
            "source",
            "reason",
            "status",
            "stripe_refund_id",
            "failure_reason",
            "requested_by",
            "decided_by",
            "decided_at",
            "decision_note",
            "created_at",
            "succeeded_at",
            "failed_at",
        ]


class OrderOutput(FieldsOnce, serializers.ModelSerializer):
    coupon = serializers.SerializerMethodField()
    ledger_address = serializers.CharField(read_only=True)
    refundable = serializers.IntegerField(read_only=True)

    class Meta:
        model = Order
        fields = [
            "id",
            "status",
            "restaurant",
            "rider",
            "customer",
            "asset",
            "subtotal",
            "delivery_fee",
            "discount",
            "total",
            "coupon",
            "coupon_state",
            "payment_intent_id",
            "payment_intent_cancel",
            "charge_id",
            "amount_paid",
            "stripe_fee",
            "amount_refunded",
            "refundable",
            "ledger_address",
            "created_at",
            "paid_at",
            "delivered_at",
        ]

    def get_coupon(self, order: Order) -> str | None:
        return order.campaign.code if order.campaign_id and order.campaign else None


class OrderCreatedOutput(FieldsOnce, serializers.Serializer):
    order = OrderOutput()
    payment_intent = serializers.DictField()


class CampaignOutput(FieldsOnce, serializers.ModelSerializer):
    ledger_address = serializers.CharField(read_only=True)
    remaining = serializers.SerializerMethodField()

    class Meta:
        model = Campaign
        fields = [
            "id",
            "code",
            "name",
            "asset",
            "budget",
            "funded",
            "remaining",
            "percent_off",
            "per_order_cap",
            "starts_at",
            "ends_at",
            "paused",
            "closed_at",
            "ledger_address",
        ]

    def get_remaining(self, campaign: Campaign) -> int:
        from ledger.selectors import balance_get

        return balance_get(address=campaign.ledger_address, asset=campaign.asset)


class TopupOutput(FieldsOnce, serializers.ModelSerializer):
    class Meta:
        model = Topup
        fields = ["id", "amount", "asset", "description", "status", "stripe_topup_id", "created_at"]


class RefundDecisionInput(FieldsOnce, serializers.Serializer):
    note = serializers.CharField(max_length=500, required=False, default="", allow_blank=True)


class RefundRejectInput(FieldsOnce, serializers.Serializer):
    reason = serializers.CharField(max_length=500)


class AnomalyOutput(FieldsOnce, serializers.ModelSerializer):
    order = serializers.IntegerField(source="order_id", allow_null=True)

    class Meta:
        model = Anomaly
        fields = ["id", "kind", "stripe_object", "order", "message", "created_at"]
