"""Shapes of the payouts API (read-only models, and the small request bodies)."""

from __future__ import annotations

from rest_framework import serializers

from payouts.models import PayeeKind, Payout, PayoutEvent


class PayoutEventSerializer(serializers.ModelSerializer):
    class Meta:
        model = PayoutEvent
        fields = ["id", "from_state", "to_state", "why", "actor", "data", "created_at"]
        read_only_fields = fields


class PayoutSerializer(serializers.ModelSerializer):
    class Meta:
        model = Payout
        fields = [
            "id",
            "payee_kind",
            "payee_id",
            "seq",
            "payee_address",
            "account",
            "destination",
            "asset",
            "amount",
            "state",
            "idempotency_key",
            "transfer_id",
            "amount_reversed",
            "attempts",
            "last_error",
            "needs_attention",
            "created_at",
            "state_changed_at",
            "submitting_at",
            "submitted_at",
            "paid_at",
            "returned_at",
        ]
        read_only_fields = fields


class PayoutDetailSerializer(PayoutSerializer):
    events = PayoutEventSerializer(many=True, read_only=True)

    class Meta(PayoutSerializer.Meta):
        fields = [*PayoutSerializer.Meta.fields, "events"]
        read_only_fields = fields


class ReasonSerializer(serializers.Serializer):
    reason = serializers.CharField(max_length=2000, allow_blank=False, trim_whitespace=True)


class RunSerializer(serializers.Serializer):
    min_amount = serializers.IntegerField(required=False, min_value=1, max_value=2**62)
    kinds = serializers.ListField(
        child=serializers.ChoiceField(choices=PayeeKind.choices), required=False, allow_empty=False
    )


class ScheduleResultSerializer(serializers.Serializer):
    candidates = serializers.IntegerField()
    created = serializers.IntegerField()
    skipped_in_flight = serializers.IntegerField()
    skipped_held = serializers.IntegerField()
    skipped_below_minimum = serializers.IntegerField()
    amounts = serializers.DictField(child=serializers.IntegerField())
    seconds = serializers.FloatField()
    payout_ids = serializers.ListField(child=serializers.UUIDField())


class StatusSerializer(serializers.Serializer):
    states = serializers.DictField(child=serializers.IntegerField())
    amounts = serializers.DictField(child=serializers.DictField(child=serializers.IntegerField()))
    stuck = PayoutSerializer(many=True)
    needs_attention = serializers.IntegerField()
    oldest_in_flight = serializers.DateTimeField(allow_null=True)
