"""The ledger's REST API (mounted at /api/v1/ledger/). Thin: parse, call one service or
selector, shape. Errors are LedgerError subclasses rendered by config.api.exception_handler as
`{"code", "message", ...}`. Reads need a staff user or `ledger.view_transaction`; each write
needs its named permission (`ledger.post_transaction`, `ledger.revert_transaction`,
`ledger.set_account_metadata`) and leaves an audit row in the same database transaction."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any, TypeVar

from django.db import transaction
from django.http import QueryDict
from django.utils.dateparse import parse_datetime
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema, inline_serializer
from rest_framework import serializers, status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from audit.services import audit_record
from config.input import instant_param
from config.pagination import CursorPagination, LimitOffsetPagination
from config.permissions import NamedPermissions
from ledger import selectors, services
from ledger import serializers as s
from ledger.errors import InvalidTransaction
from ledger.models import Transaction
from ledger.retry import retry_on_conflict
from ledger.services import PostResult

R = TypeVar("R")


class LedgerView(APIView):
    permission_classes = [NamedPermissions]
    read_permissions = ("ledger.view_transaction", "ledger.view_account")
    required_permissions: dict[str, tuple[str, ...]] = {}


@retry_on_conflict
def _audited(write: Callable[[], R], audit: Callable[[R], None]) -> R:
    """Run a ledger write and its audit row in one database transaction (retried whole on a
    deadlock): the row exists if and only if the write happened."""
    with transaction.atomic(durable=True):
        result = write()
        audit(result)
    return result


def _audit_post(request: Request, action: str, result: PostResult) -> None:
    if result.replayed or result.dry_run:
        return
    tx = result.transaction
    audit_record(
        actor=request.user,
        action=action,
        object_type="ledger.transaction",
        object_id=tx.pk,
        data={
            "reference": tx.reference,
            "reverts": tx.reverts_id,
            "postings": [p.as_dict() for p in result.postings],
        },
    )


def _datetime_param(params: QueryDict, name: str) -> datetime | None:
    return instant_param(params, name)


def _metadata_params(params: QueryDict) -> dict[str, str]:
    """`metadata[key]=value` query parameters."""
    return {
        key[len("metadata[") : -1]: str(value)
        for key, value in params.items()
        if key.startswith("metadata[") and key.endswith("]") and len(key) > len("metadata[]")
    }


def _transactions_data(txs: list[Transaction]) -> list[dict[str, Any]]:
    reverted_by = dict(
        Transaction.objects.filter(reverts_id__in=[tx.pk for tx in txs]).values_list(
            "reverts_id", "id"
        )
    )
    return list(s.TransactionSerializer(txs, many=True, context={"reverted_by": reverted_by}).data)


def _post_result_data(result: PostResult) -> dict[str, Any]:
    postings = [p.as_dict() for p in result.postings]
    tx = result.transaction
    reverted_by = None if tx.pk is None else selectors.transaction_reverted_by(transaction_id=tx.pk)
    data = s.TransactionSerializer(
        tx, context={"postings": {tx.pk: postings}, "reverted_by": {tx.pk: reverted_by}}
    ).data
    return {
        "transaction": data,
        "replayed": result.replayed,
        "dry_run": result.dry_run,
        "account_meta": result.account_meta,
    }


_POST_RESULT = inline_serializer(
    "PostResult",
    {
        "transaction": s.TransactionSerializer(),
        "replayed": serializers.BooleanField(),
        "dry_run": serializers.BooleanField(),
        "account_meta": serializers.DictField(),
    },
)
_ERROR = inline_serializer(
    "LedgerErrorBody", {"code": serializers.CharField(), "message": serializers.CharField()}
)


class TransactionPagination(CursorPagination):
    ordering = "-id"


class AccountsView(LedgerView):
    pagination_class = LimitOffsetPagination

    @extend_schema(
        summary="List accounts with their balances",
        parameters=[
            OpenApiParameter("pattern", str, description="`*` one segment, `**` one or more"),
            OpenApiParameter("metadata[key]", str, description="metadata containment filter"),
        ],
        responses={200: s.AccountSerializer(many=True)},
    )
    def get(self, request: Request) -> Response:
        params = request.query_params
        pattern = params.get("pattern") or None
        if pattern is not None:
            from ledger.domain import validate_pattern

            validate_pattern(pattern)
        qs = selectors.accounts_list(pattern=pattern, metadata=_metadata_params(params))
        paginator = self.pagination_class()
        page = paginator.paginate_queryset(qs, request, view=self) or []
        balances = selectors.account_balances_map(account_ids=[a.pk for a in page])
        data = s.AccountSerializer(page, many=True, context={"balances": balances}).data
        return paginator.get_paginated_response(data)


class AccountDetailView(LedgerView):
    @extend_schema(
        summary="One account: metadata and volumes per asset",
        parameters=[OpenApiParameter("at", OpenApiTypes.DATETIME, description="past instant")],
        responses={200: s.AccountDetailSerializer, 404: _ERROR},
    )
    def get(self, request: Request, address: str) -> Response:
        at = _datetime_param(request.query_params, "at")
        account = selectors.account_get(address=address)
        volumes = selectors.account_volumes_get(address=address, at=at)
        return Response(s.AccountDetailSerializer(account, context={"volumes": volumes}).data)


class AccountMetadataView(LedgerView):
    required_permissions = {"POST": ("ledger.set_account_metadata",)}

    @extend_schema(
        summary="Set account metadata keys (string values); creates the account if needed",
        request={
            "application/json": {
                "type": "object",
                "description": "metadata keys (1 to 255 characters) to their string values",
                "additionalProperties": {"type": "string"},
                "minProperties": 1,
            }
        },
        responses={200: s.AccountMetadataSerializer, 400: _ERROR},
    )
    def post(self, request: Request, address: str) -> Response:
        data = request.data
        if isinstance(data, QueryDict):
            # A form body: one string per key (the last), never the list QueryDict keeps.
            data = data.dict()
        if not isinstance(data, dict):
            raise InvalidTransaction("The body must be an object of string values.")
        metadata = services.account_metadata_set(
            address=address, metadata=data, actor=request.user.get_username()
        )
        return Response({"address": address, "metadata": metadata})

    @extend_schema(
        summary="The account's metadata and the history of its changes",
        responses={
            200: inline_serializer(
                "AccountMetadataHistory",
                {
                    "address": serializers.CharField(),
                    "metadata": serializers.DictField(child=serializers.CharField()),
                    "history": s.MetadataChangeSerializer(many=True),
                },
            )
        },
    )
    def get(self, request: Request, address: str) -> Response:
        changes = selectors.account_metadata_history(address=address)
        return Response(
            {
                "address": address,
                "metadata": selectors.account_metadata_get(address=address),
                "history": s.MetadataChangeSerializer(changes, many=True).data,
            }
        )


class AccountMetadataKeyView(LedgerView):
    required_permissions = {"DELETE": ("ledger.set_account_metadata",)}

    @extend_schema(
        summary="Delete one account metadata key",
        responses={200: s.AccountMetadataSerializer, 404: _ERROR},
    )
    def delete(self, request: Request, address: str, key: str) -> Response:
        metadata = services.account_metadata_delete(
            address=address, key=key, actor=request.user.get_username()
        )
        return Response({"address": address, "metadata": metadata})


class TransactionsView(LedgerView):
    required_permissions = {"POST": ("ledger.post_transaction",)}
    pagination_class = TransactionPagination

    @extend_schema(
        summary="List transactions, newest first",
        parameters=[
            OpenApiParameter("account", str, description="either side; patterns allowed"),
            OpenApiParameter("source", str),
            OpenApiParameter("destination", str),
            OpenApiParameter("reference", str),
            OpenApiParameter("metadata[key]", str, description="metadata containment filter"),
            OpenApiParameter("start_time", OpenApiTypes.DATETIME, description="inclusive"),
            OpenApiParameter("end_time", OpenApiTypes.DATETIME, description="exclusive"),
            OpenApiParameter("reverted", bool),
        ],
        responses={200: s.TransactionSerializer(many=True)},
    )
    def get(self, request: Request) -> Response:
        params = request.query_params
        reverted = params.get("reverted")
        qs = selectors.transactions_list(
            account=params.get("account") or None,
            source=params.get("source") or None,
            destination=params.get("destination") or None,
            reference=params.get("reference") or None,
            metadata=_metadata_params(params),
            start=_datetime_param(params, "start_time"),
            end=_datetime_param(params, "end_time"),
            reverted=None if reverted in (None, "") else reverted.lower() in ("1", "true", "yes"),
        )
        paginator = self.pagination_class()
        page = paginator.paginate_queryset(qs, request, view=self) or []
        return paginator.get_paginated_response(_transactions_data(list(page)))

    @extend_schema(
        summary="Post a transaction from postings or a Numscript script",
        request=s.TransactionCreateSerializer,
        responses={201: _POST_RESULT, 200: _POST_RESULT, 400: _ERROR, 409: _ERROR},
        description=(
            'Body: `{"postings": [{"source", "destination", "asset", "amount"}], "reference", '
            '"metadata", "timestamp", "overdraft": {"address": bound or null}, "dry_run"}` or '
            '`{"script": {"plain": "send ...", "vars": {...}}, ...}`. 201 when written, 200 '
            "for a replay of the same reference (replayed: true) or a dry run."
        ),
    )
    def post(self, request: Request) -> Response:
        body = s.TransactionCreateSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        data = body.validated_data
        script = data.get("script")
        if script is not None and "postings" in data:
            raise InvalidTransaction("Give either postings or a script, not both.")
        if script is None and "postings" not in data:
            raise InvalidTransaction("A transaction needs postings or a script.")
        result = _audited(
            lambda: services.transaction_post(
                postings=data.get("postings"),
                script=script["plain"] if script else None,
                vars=script.get("vars") if script else None,
                reference=data.get("reference"),
                metadata=data.get("metadata"),
                timestamp=data.get("timestamp"),
                overdraft=data.get("overdraft"),
                feature_flags=data.get("feature_flags") or (),
                dry_run=data.get("dry_run", False),
            ),
            lambda r: _audit_post(request, "ledger.post", r),
        )
        created = not (result.replayed or result.dry_run)
        return Response(
            _post_result_data(result),
            status=status.HTTP_201_CREATED if created else status.HTTP_200_OK,
        )


class TransactionDetailView(LedgerView):
    @extend_schema(summary="One transaction", responses={200: s.TransactionSerializer})
    def get(self, request: Request, transaction_id: int) -> Response:
        tx = selectors.transaction_get(transaction_id=transaction_id)
        return Response(_transactions_data([tx])[0])


class TransactionRevertView(LedgerView):
    required_permissions = {"POST": ("ledger.revert_transaction",)}

    @extend_schema(
        summary="Revert a transaction (post its inverse)",
        request=s.TransactionRevertSerializer,
        responses={201: _POST_RESULT, 200: _POST_RESULT, 404: _ERROR, 409: _ERROR},
    )
    def post(self, request: Request, transaction_id: int) -> Response:
        body = s.TransactionRevertSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        data = body.validated_data
        result = _audited(
            lambda: services.transaction_revert(
                transaction_id=transaction_id,
                force=data["force"],
                reference=data.get("reference"),
                metadata=data.get("metadata"),
                at_original_timestamp=data["at_original_timestamp"],
            ),
            lambda r: _audit_post(request, "ledger.revert", r),
        )
        return Response(
            _post_result_data(result),
            status=status.HTTP_200_OK if result.replayed else status.HTTP_201_CREATED,
        )


class TransactionsBulkView(LedgerView):
    required_permissions = {"POST": ("ledger.post_transaction",)}

    @extend_schema(
        summary="Post many transactions: all or nothing (atomic) or independently",
        request=s.BulkSerializer,
        responses={
            200: inline_serializer("BulkOut", {"results": s.BulkResultSerializer(many=True)})
        },
    )
    def post(self, request: Request) -> Response:
        body = s.BulkSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        items = []
        for raw in body.validated_data["items"]:
            if isinstance(raw, dict) and isinstance(raw.get("timestamp"), str):
                try:
                    parsed = parse_datetime(raw["timestamp"])
                except ValueError:  # well formed, not a date: the service refuses the string
                    parsed = None
                raw = {**raw, "timestamp": parsed if parsed is not None else raw["timestamp"]}
            items.append(raw)
        atomic = body.validated_data["atomic"]

        def audit(results: list[Any]) -> None:
            written = [r.result for r in results if r.result is not None and not r.result.replayed]
            if written:
                audit_record(
                    actor=request.user,
                    action="ledger.bulk",
                    object_type="ledger.transaction",
                    object_id=",".join(str(r.transaction.pk) for r in written)[:64],
                    data={
                        "transactions": [r.transaction.pk for r in written],
                        "atomic": atomic,
                    },
                )

        results = _audited(
            lambda: services.transactions_post_bulk(items=items, atomic=atomic), audit
        )
        out = []
        for item in results:
            if item.result is not None:
                data = _post_result_data(item.result)
                out.append(
                    {
                        "index": item.index,
                        "ok": True,
                        "replayed": item.result.replayed,
                        "transaction": data["transaction"],
                    }
                )
            else:
                assert item.error is not None
                out.append({"index": item.index, "ok": False, "error": item.error.as_dict()})
        return Response({"results": out})


class BalancesView(LedgerView):
    @extend_schema(
        summary="Balances aggregated by address pattern",
        parameters=[
            OpenApiParameter("pattern", str, description="`*` one segment, `**` one or more"),
            OpenApiParameter("asset", str),
            OpenApiParameter("at", OpenApiTypes.DATETIME),
        ],
        responses={200: s.BalancesSerializer},
    )
    def get(self, request: Request) -> Response:
        params = request.query_params
        at = _datetime_param(params, "at")
        result = selectors.balances_get(
            pattern=params.get("pattern") or "**", asset=params.get("asset") or None, at=at
        )
        return Response(
            {
                "pattern": result.pattern,
                "at": at,
                "totals": result.totals,
                "accounts": result.accounts,
            }
        )


class BalanceSheetView(LedgerView):
    @extend_schema(
        summary="Balance sheet and trial balance per asset",
        parameters=[OpenApiParameter("at", OpenApiTypes.DATETIME)],
        responses={200: s.BalanceSheetSerializer},
    )
    def get(self, request: Request) -> Response:
        at = _datetime_param(request.query_params, "at")
        sheet = selectors.balance_sheet_get(at=at)
        return Response(
            {
                "at": at,
                "balanced": sheet.balanced,
                "unclassified": sheet.unclassified,
                "assets": [s.asset_sheet_data(a) for a in sheet.assets],
            }
        )
