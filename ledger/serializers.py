"""DRF serializers of the ledger API: they parse shapes and render results, nothing more. The
rules (addresses, assets, amounts, overdraft, metadata) are checked by the services, so a bad
value gets the same error code from the API as from Python."""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import extend_schema_serializer
from rest_framework import serializers

from ledger.models import Account, AccountMetadataChange, Transaction
from ledger.selectors import AssetSheet


class AnyJSONField(serializers.JSONField):
    """A JSON value passed through untouched (the service validates it)."""


class PostingSerializer(serializers.Serializer):
    source = serializers.CharField(  # type: ignore[assignment]
        help_text="Account address, e.g. stripe:balance"
    )
    destination = serializers.CharField()
    asset = serializers.CharField(help_text="Numscript asset: USD/2, EUR/2, JPY, COIN")
    amount = AnyJSONField(help_text="Integer amount in minor units, > 0 and <= 2**63-1")


class ScriptSerializer(serializers.Serializer):
    plain = serializers.CharField(trim_whitespace=False, help_text="Numscript source")
    vars = serializers.DictField(child=serializers.CharField(), required=False, default=dict)


class TransactionCreateSerializer(serializers.Serializer):
    postings = serializers.ListField(child=AnyJSONField(), required=False)
    script = ScriptSerializer(required=False)
    reference = serializers.CharField(required=False, allow_null=True, max_length=1000)
    metadata = AnyJSONField(required=False, default=dict)
    timestamp = serializers.DateTimeField(required=False, allow_null=True)
    overdraft = serializers.DictField(
        child=serializers.IntegerField(allow_null=True, min_value=0),
        required=False,
        help_text="source address -> allowed overdraft (null: unbounded)",
    )
    feature_flags = serializers.ListField(child=serializers.CharField(), required=False)
    dry_run = serializers.BooleanField(required=False, default=False)


class TransactionRevertSerializer(serializers.Serializer):
    force = serializers.BooleanField(required=False, default=False)
    reference = serializers.CharField(required=False, allow_null=True, max_length=1000)
    metadata = AnyJSONField(required=False, default=dict)
    at_original_timestamp = serializers.BooleanField(required=False, default=False)


class BulkSerializer(serializers.Serializer):
    items = serializers.ListField(child=AnyJSONField(), max_length=10_000)
    atomic = serializers.BooleanField(required=False, default=True)


class PostingOutSerializer(serializers.Serializer):
    source = serializers.CharField()  # type: ignore[assignment]
    destination = serializers.CharField()
    asset = serializers.CharField()
    amount = serializers.IntegerField()


class TransactionSerializer(serializers.ModelSerializer):
    metadata = serializers.DictField(help_text="any JSON values")
    postings = serializers.SerializerMethodField()
    reverts = serializers.IntegerField(source="reverts_id", allow_null=True)
    reverted_by = serializers.SerializerMethodField()

    class Meta:
        model = Transaction
        fields = [
            "id",
            "reference",
            "timestamp",
            "inserted_at",
            "metadata",
            "postings",
            "reverts",
            "reverted_by",
        ]

    def get_postings(self, tx: Transaction) -> list[dict[str, Any]]:
        postings = self.context.get("postings", {}).get(tx.pk)
        if postings is None:
            postings = [
                {
                    "source": p.source.address,
                    "destination": p.destination.address,
                    "asset": p.asset,
                    "amount": p.amount,
                }
                for p in tx.postings.all()
            ]
        return postings

    def get_reverted_by(self, tx: Transaction) -> int | None:
        return self.context.get("reverted_by", {}).get(tx.pk)


class PostResultSerializer(serializers.Serializer):
    transaction = TransactionSerializer()
    replayed = serializers.BooleanField()
    dry_run = serializers.BooleanField()
    account_meta = serializers.DictField(required=False)


class VolumesSerializer(serializers.Serializer):
    input = serializers.IntegerField()
    output = serializers.IntegerField()
    balance = serializers.IntegerField()


class AccountSerializer(serializers.ModelSerializer):
    # Account metadata is string to string (ledger.domain.validate_account_metadata).
    metadata = serializers.DictField(child=serializers.CharField(allow_blank=True))
    balances = serializers.SerializerMethodField()

    class Meta:
        model = Account
        fields = ["address", "metadata", "created_at", "balances"]

    def get_balances(self, account: Account) -> dict[str, int]:
        return self.context.get("balances", {}).get(account.pk, {})


class AccountDetailSerializer(serializers.ModelSerializer):
    metadata = serializers.DictField(child=serializers.CharField(allow_blank=True))
    volumes = serializers.SerializerMethodField()

    class Meta:
        model = Account
        fields = ["address", "metadata", "created_at", "volumes"]

    def get_volumes(self, account: Account) -> dict[str, dict[str, int]]:
        return {
            asset: {"input": v.input, "output": v.output, "balance": v.balance}
            for asset, v in sorted(self.context.get("volumes", {}).items())
        }


class MetadataChangeSerializer(serializers.ModelSerializer):
    class Meta:
        model = AccountMetadataChange
        fields = ["id", "key", "value", "changed_at", "transaction", "actor"]


@extend_schema_serializer(component_name="AccountMetadataResult")  # not the model's field name
class AccountMetadataSerializer(serializers.Serializer):
    address = serializers.CharField()
    metadata = serializers.DictField(child=serializers.CharField(allow_blank=True))


class BalancesSerializer(serializers.Serializer):
    pattern = serializers.CharField()
    at = serializers.DateTimeField(allow_null=True)
    totals = serializers.DictField(child=serializers.IntegerField())
    accounts = serializers.DictField(child=serializers.DictField(child=serializers.IntegerField()))


def asset_sheet_data(sheet: AssetSheet) -> dict[str, Any]:
    return {
        "asset": sheet.asset,
        "lines": [
            {
                "address": line.address,
                "type": line.type,
                "balance": line.balance,
                "amount": line.amount,
                "debit": line.debit,
                "credit": line.credit,
            }
            for line in sheet.lines
        ],
        "totals": sheet.totals,
        "net_income": sheet.net_income,
        "liabilities_and_equity": sheet.liabilities_and_equity,
        "total_debits": sheet.total_debits,
        "total_credits": sheet.total_credits,
        "balanced": sheet.balanced,
    }


class SheetLineSerializer(serializers.Serializer):
    address = serializers.CharField()
    type = serializers.CharField()
    balance = serializers.IntegerField(help_text="ledger sign: input - output")
    amount = serializers.IntegerField(help_text="accountant's sign (debit-normal negated)")
    debit = serializers.IntegerField()
    credit = serializers.IntegerField()


class AssetSheetSerializer(serializers.Serializer):
    asset = serializers.CharField()
    lines = SheetLineSerializer(many=True)
    totals = serializers.DictField(child=serializers.IntegerField())
    net_income = serializers.IntegerField()
    liabilities_and_equity = serializers.IntegerField()
    total_debits = serializers.IntegerField()
    total_credits = serializers.IntegerField()
    balanced = serializers.BooleanField()


class BalanceSheetSerializer(serializers.Serializer):
    at = serializers.DateTimeField(allow_null=True)
    balanced = serializers.BooleanField()
    unclassified = serializers.ListField(child=serializers.CharField())
    assets = AssetSheetSerializer(many=True)


class BulkResultSerializer(serializers.Serializer):
    index = serializers.IntegerField()
    ok = serializers.BooleanField()
    replayed = serializers.BooleanField(required=False)
    transaction = TransactionSerializer(required=False)
    error = serializers.DictField(required=False)
