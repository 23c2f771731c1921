"""The API keeps its contract (issue 17): bad input is a clear 400 before the database, lists
are bounded, the schema tells the truth (envelopes, metadata types, every status code with the
error body, security, operationIds), and the last-resort handler never answers a 500."""

from __future__ import annotations

import base64
import logging
import re
from pathlib import Path
from typing import Any

import pytest
from django.core.management import call_command
from django.db import DataError, IntegrityError, transaction
from rest_framework.request import Request
from rest_framework.test import APIClient, APIRequestFactory

from config.api import exception_handler
from config.pagination import CursorPagination, LimitOffsetPagination
from ledger.models import Account
from ledger.services import account_metadata_set
from marketplace.models import Campaign, Restaurant, Topup
from tests.auth import ALL_ROLES, make_user, token_client

pytestmark = pytest.mark.django_db

BEYOND_BIGINT = "9223372036854775808"  # 2**63


@pytest.fixture
def client() -> APIClient:
    return token_client(make_user("everyone", roles=ALL_ROLES))


@pytest.fixture(scope="module")
def schema(django_db_setup: Any, django_db_blocker: Any) -> dict[str, Any]:
    with django_db_blocker.unblock():
        superuser = make_user("schema-reader", superuser=True)
        response = token_client(superuser).get("/api/schema/", {"format": "json"})
        superuser.delete()
    assert response.status_code == 200
    return dict(response.json())


def _operations(schema: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [
        (path, method, op)
        for path, ops in schema["paths"].items()
        for method, op in ops.items()
        if method in {"get", "post", "put", "patch", "delete"}
    ]


def _resolve(schema: dict[str, Any], node: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in node:
        node = schema["components"]["schemas"][node["$ref"].rsplit("/", 1)[1]]
    return node


# --- bad input: a 400 before the database ---------------------------------------------------


def test_nul_in_the_orders_status_filter_is_400(client: APIClient) -> None:
    response = client.get("/api/v1/orders/", {"status": "\x00"})

    assert response.status_code == 400
    assert response.json()["code"] == "invalid_input"
    assert "NUL" in response.json()["message"]


def test_nul_in_the_ledger_reference_filter_is_400(client: APIClient) -> None:
    response = client.get("/api/v1/ledger/transactions/", {"reference": "ab\x00"})

    assert response.status_code == 400
    assert response.json() == {
        "code": "invalid_input",
        "message": "query parameter 'reference' contains a NUL character (PostgreSQL text "
        "cannot hold one).",
        "field": "reference",
    }


def test_nul_in_a_path_parameter_is_400(client: APIClient) -> None:
    response = client.get("/api/v1/ledger/accounts/a%00b/")

    assert response.status_code == 400
    assert response.json()["code"] == "invalid_input"


def test_nul_in_a_json_body_is_400_and_writes_nothing(client: APIClient) -> None:
    response = client.post("/api/v1/restaurants/", {"name": "Chez\x00"}, format="json")

    assert response.status_code == 400
    assert response.json()["field"] == "body.name"
    assert Restaurant.objects.count() == 0


def test_nul_in_a_form_body_is_400_and_writes_nothing(client: APIClient) -> None:
    response = client.post("/api/v1/restaurants/", {"name": "Chez\x00"})  # multipart
    urlencoded = client.post(
        "/api/v1/restaurants/", "name=Chez%00", content_type="application/x-www-form-urlencoded"
    )

    assert response.status_code == 400
    assert urlencoded.status_code == 400
    assert Restaurant.objects.count() == 0


def test_a_lone_surrogate_in_a_json_body_is_400(client: APIClient) -> None:
    response = client.post(
        "/api/v1/restaurants/", '{"name": "\\ud800"}', content_type="application/json"
    )

    assert response.status_code == 400
    assert "surrogate" in response.json()["message"]


def test_an_integer_beyond_bigint_in_a_body_is_400(client: APIClient) -> None:
    response = client.post("/api/v1/orders/", {"restaurant": 2**63, "subtotal": 100}, format="json")

    assert response.status_code == 400
    assert response.json()["code"] == "number_out_of_range"


def test_deeply_nested_json_is_400_not_a_recursion_error(client: APIClient) -> None:
    body = "[" * 100_000 + "]" * 100_000

    response = client.post("/api/v1/ledger/transactions/", body, content_type="application/json")

    assert response.status_code == 400


def test_too_many_form_fields_is_a_json_400(client: APIClient) -> None:
    body = "&".join(f"f{i}=1" for i in range(1_100))

    response = client.post(
        "/api/v1/restaurants/", body, content_type="application/x-www-form-urlencoded"
    )

    assert response.status_code == 400
    assert response.json()["code"] == "bad_request"


def test_an_oversized_query_value_is_400(client: APIClient) -> None:
    response = client.get("/api/v1/ledger/transactions/", {"reference": "r" * 1001})

    assert response.status_code == 400


@pytest.mark.parametrize(
    ("path", "param"),
    [
        ("/api/v1/orders/", "status"),
        ("/api/v1/payouts/", "state"),
        ("/api/v1/payouts/", "payee_kind"),
        ("/api/v1/books/payees/", "kind"),
        ("/api/v1/reconciliation/runs/1/items/", "outcome"),
    ],
)
def test_an_unknown_enum_value_is_400(client: APIClient, path: str, param: str) -> None:
    response = client.get(path, {param: "bogus"})

    assert response.status_code in (400, 404)  # the run does not exist: 404 is fine too
    if path != "/api/v1/reconciliation/runs/1/items/":
        assert response.status_code == 400


@pytest.mark.parametrize(
    ("path", "param"),
    [
        ("/api/v1/books/risk/", "at"),
        ("/api/v1/ledger/balances/", "at"),
        ("/api/v1/ledger/transactions/", "start_time"),
    ],
)
@pytest.mark.parametrize("value", ["2024-02-30T00:00:00Z", "2024-13-01T00:00:00Z", "yesterday"])
def test_a_malformed_date_is_400(client: APIClient, path: str, param: str, value: str) -> None:
    response = client.get(path, {param: value})

    assert response.status_code == 400
    assert response.json()["code"] == "invalid_timestamp"


def test_topup_asset_outside_the_database_constraint_is_400(client: APIClient) -> None:
    # topup_asset_valid was the first to notice "ÙK": a 500
    response = client.post("/api/v1/topups/", {"amount": 83, "asset": "ÙK"}, format="json")

    assert response.status_code == 400
    assert list(response.json()["errors"]) == ["asset"]
    assert Topup.objects.count() == 0


@pytest.mark.parametrize(
    ("path", "body", "field"),
    [
        ("/api/v1/restaurants/", {"name": "A", "asset": "usd"}, "asset"),
        ("/api/v1/restaurants/", {"name": "A", "commission": "lots"}, "commission"),
        (
            "/api/v1/campaigns/",
            {"code": "OK1", "budget": 10, "per_order_cap": 5, "asset": "€"},
            "asset",
        ),
        (
            "/api/v1/campaigns/",
            {"code": "OK1", "budget": 10, "per_order_cap": 5, "percent_off": "1%%"},
            "percent_off",
        ),
        ("/api/v1/campaigns/", {"code": "É", "budget": 10, "per_order_cap": 5}, "code"),
        (
            "/api/v1/campaigns/",
            {
                "code": "OK1",
                "budget": 10,
                "per_order_cap": 5,
                "starts_at": "2030-01-02T00:00:00Z",
                "ends_at": "2030-01-01T00:00:00Z",
            },
            "ends_at",
        ),
    ],
)
def test_serializers_mirror_the_check_constraints(
    client: APIClient, path: str, body: dict[str, Any], field: str
) -> None:
    response = client.post(path, body, format="json")

    assert response.status_code == 400
    assert field in response.json()["errors"]
    assert Campaign.objects.count() == 0


def test_the_asset_rule_is_postgresql_s_end_of_string() -> None:
    from marketplace.api.serializers import ASSET

    ASSET("USD/2")
    with pytest.raises(Exception, match="asset"):
        ASSET("USD/2\n")  # Python's $ matches before a final newline; PostgreSQL's does not


def test_unmatched_api_urls_answer_json_404(client: APIClient) -> None:
    response = client.get("/api/v1/orders/not-a-number/")

    assert response.status_code == 404
    assert response.json() == {"code": "not_found", "message": "Not found."}


# --- pagination ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "path",
    [
        "/api/v1/orders/",
        "/api/v1/payouts/",
        "/api/v1/ledger/accounts/",
        "/api/v1/reconciliation/runs/",
        "/api/v1/invoices/",
    ],
)
@pytest.mark.parametrize("param", ["limit", "offset"])
def test_limit_or_offset_beyond_bigint_is_400(client: APIClient, path: str, param: str) -> None:
    response = client.get(path, {param: BEYOND_BIGINT})

    assert response.status_code == 400
    assert response.json()["code"] == "invalid"
    assert param in response.json()["errors"]


@pytest.mark.parametrize("value", ["abc", "-1", "0", "1.5", "²"])
def test_a_limit_that_is_not_a_positive_integer_is_400(client: APIClient, value: str) -> None:
    assert client.get("/api/v1/orders/", {"limit": value}).status_code == 400


def test_pages_are_capped_at_max_limit() -> None:
    def request(query: str) -> Request:
        return Request(APIRequestFactory().get(f"/api/v1/orders/?{query}"))

    assert LimitOffsetPagination().get_limit(request("limit=5000")) == 1000
    assert LimitOffsetPagination().get_limit(request("")) == 100
    assert CursorPagination().get_page_size(request("page_size=5000")) == 1000


def test_a_tampered_cursor_is_404_not_500(client: APIClient) -> None:
    cursor = base64.b64encode(b"p=abc").decode()

    response = client.get("/api/v1/ledger/transactions/", {"cursor": cursor})

    assert response.status_code == 404
    assert response.json()["code"] == "not_found"


def test_page_size_beyond_bigint_is_400(client: APIClient) -> None:
    response = client.get("/api/v1/ledger/transactions/", {"page_size": BEYOND_BIGINT})

    assert response.status_code == 400


# --- the schema tells the truth ----------------------------------------------------------------


def test_the_schema_validates_without_warnings(tmp_path: Path) -> None:
    call_command(
        "spectacular", "--validate", "--fail-on-warn", "--file", str(tmp_path / "schema.yaml")
    )


@pytest.mark.parametrize(
    ("path", "envelope"),
    [
        ("/api/v1/ledger/accounts/", {"count", "next", "previous", "results"}),
        ("/api/v1/ledger/transactions/", {"next", "previous", "results"}),
        ("/api/v1/payouts/", {"count", "next", "previous", "results"}),
        ("/api/v1/orders/", {"count", "next", "previous", "results"}),
        ("/api/v1/reconciliation/runs/", {"count", "next", "previous", "results"}),
        ("/api/v1/invoices/", {"count", "next", "previous", "results"}),
    ],
)
def test_paginated_lists_document_their_envelope(
    schema: dict[str, Any], client: APIClient, path: str, envelope: set[str]
) -> None:
    # given: what the schema says
    documented = _resolve(
        schema, schema["paths"][path]["get"]["responses"]["200"]["content"]["application/json"]
    )["schema"]
    documented = _resolve(schema, documented)

    # when: what the API answers
    answered = client.get(path).json()

    # then
    assert documented["type"] == "object"
    assert set(documented["properties"]) == envelope
    assert documented["properties"]["results"]["type"] == "array"
    assert set(answered) == envelope


def test_account_metadata_is_documented_as_string_values(schema: dict[str, Any]) -> None:
    for name in ("Account", "AccountDetail", "AccountMetadataResult"):
        metadata = schema["components"]["schemas"][name]["properties"]["metadata"]
        assert metadata["type"] == "object"
        assert metadata["additionalProperties"] == {"type": "string"}
    body = schema["paths"]["/api/v1/ledger/accounts/{address}/metadata/"]["post"]["requestBody"]
    assert body["content"]["application/json"]["schema"]["additionalProperties"] == {
        "type": "string"
    }
    tx_metadata = schema["components"]["schemas"]["Transaction"]["properties"]["metadata"]
    assert tx_metadata["type"] == "object"


def test_a_form_body_stores_strings_in_account_metadata_not_lists() -> None:
    client = token_client(make_user("fa", roles=["Finance admin"]))

    response = client.post("/api/v1/ledger/accounts/restaurants:7/metadata/", {"tier": "gold"})

    assert response.status_code == 200
    assert Account.objects.get(address="restaurants:7").metadata == {"tier": "gold"}
    assert response.json()["metadata"] == {"tier": "gold"}


@pytest.mark.parametrize("value", [["x"], {"a": "b"}, 5, None, True])
def test_non_string_account_metadata_values_are_400(value: Any) -> None:
    client = token_client(make_user("fa", roles=["Finance admin"]))

    response = client.post(
        "/api/v1/ledger/accounts/restaurants:7/metadata/", {"tier": value}, format="json"
    )

    assert response.status_code == 400
    assert not Account.objects.filter(address="restaurants:7").exists()


def test_every_operation_documents_its_errors_with_the_error_body(schema: dict[str, Any]) -> None:
    error_ref = {"$ref": "#/components/schemas/ErrorBody"}
    for path, method, op in _operations(schema):
        codes = set(op["responses"])
        expected = {"400", "401", "403"}
        if "{" in path:
            expected.add("404")
        if method != "get":
            expected |= {"409", "503"}
        assert expected <= codes, (method, path, expected - codes)
        for code in ("401", "403"):
            assert op["responses"][code]["content"]["application/json"]["schema"] == error_ref
    assert set(schema["components"]["schemas"]["ErrorBody"]["required"]) == {"code", "message"}


def test_the_status_codes_answered_to_strangers_are_documented(schema: dict[str, Any]) -> None:
    # given: an anonymous caller and an authenticated one with no role and no staff flag
    anonymous = APIClient()
    stranger = token_client(make_user("stranger", staff=False))

    for path, method, op in _operations(schema):
        url = re.sub(r"\{[^}]+\}", "1", path)
        if "{payout_id}" in path:
            url = path.replace("{payout_id}", "00000000-0000-0000-0000-000000000000")
            url = re.sub(r"\{[^}]+\}", "1", url)
        # when
        refused = getattr(anonymous, method)(url, {}, format="json")
        forbidden = getattr(stranger, method)(url, {}, format="json")
        # then
        assert refused.status_code == 401, (method, path, refused.status_code)
        assert forbidden.status_code == 403, (method, path, forbidden.status_code)
        assert {"401", "403"} <= set(op["responses"])
        assert set(refused.json()) >= {"code", "message"}


def test_operation_ids_are_unique_identifiers(schema: dict[str, Any]) -> None:
    ids = [op["operationId"] for _, _, op in _operations(schema)]

    assert len(ids) == len(set(ids))
    assert all(re.fullmatch(r"[a-z][a-z0-9_]*", op_id) for op_id in ids), ids


def test_every_operation_requires_a_token_or_a_session(schema: dict[str, Any]) -> None:
    schemes = schema["components"]["securitySchemes"]
    assert schemes["knoxApiToken"]["in"] == "header"
    assert schemes["cookieAuth"]["in"] == "cookie"
    for path, method, op in _operations(schema):
        assert op["security"] == [{"knoxApiToken": []}, {"cookieAuth": []}], (method, path)


# --- the last resort: the database refused what validation let through -------------------------


def _refused(create: Any) -> Exception:
    with pytest.raises((IntegrityError, DataError)) as caught, transaction.atomic():
        create()
    return caught.value


def test_a_check_violation_is_a_400_naming_the_constraint_and_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    exc = _refused(lambda: Topup.objects.create(amount=83, asset="ÙK"))

    with caplog.at_level(logging.ERROR, logger="config.api"):
        response = exception_handler(exc, {"view": None, "request": None})

    assert response is not None and response.status_code == 400
    assert response.data["code"] == "constraint_violated"
    assert response.data["constraint"] == "topup_asset_valid"
    assert "marketplace.Topup requires asset matches ^[A-Z]" in response.data["message"]
    assert any("topup_asset_valid" in r.getMessage() for r in caplog.records)


def test_a_unique_violation_is_a_409() -> None:
    from django.contrib.auth import get_user_model

    get_user_model().objects.create(username="twice")
    exc = _refused(lambda: get_user_model().objects.create(username="twice"))

    response = exception_handler(exc, {})

    assert response is not None and response.status_code == 409
    assert response.data["code"] == "conflict"


def test_a_data_error_is_a_400() -> None:
    exc = _refused(lambda: Topup.objects.create(amount=1, description="x" * 300))

    response = exception_handler(exc, {})

    assert response is not None and response.status_code == 400
    assert response.data["code"] == "invalid_value"


def test_an_integrity_error_inside_a_view_is_not_a_500(
    client: APIClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    # given: a service that lets a bad value through to the database
    from marketplace.api import views

    monkeypatch.setattr(
        views.treasury,
        "topup_create",
        lambda **kwargs: Topup.objects.create(amount=kwargs["amount"], asset="bad"),
    )

    # when
    response = client.post("/api/v1/topups/", {"amount": 5}, format="json")

    # then
    assert response.status_code == 400
    assert response.json()["constraint"] == "topup_asset_valid"


def test_metadata_set_refuses_lists_in_python_too() -> None:
    with pytest.raises(Exception, match="must be a string"):
        account_metadata_set(address="x:1", metadata={"k": [""]})  # type: ignore[dict-item]
