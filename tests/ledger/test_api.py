"""The REST API under /api/v1/ledger/: auth, shapes, and JSON errors (never a 500)."""

import pytest
from django.contrib.auth import get_user_model
from rest_framework.test import APIClient

from ledger.models import Transaction
from ledger.selectors import balance_get
from ledger.services import transaction_post
from tests.ledger.helpers import p, table_counts

pytestmark = pytest.mark.django_db

BASE = "/api/v1/ledger"
SPLIT = {
    "postings": [
        {"source": "stripe:balance", "destination": "orders:1", "asset": "USD/2", "amount": 5000},
        {"source": "orders:1", "destination": "riders:7", "asset": "USD/2", "amount": 500},
        {"source": "orders:1", "destination": "restaurants:3", "asset": "USD/2", "amount": 3750},
        {"source": "orders:1", "destination": "platform:fees", "asset": "USD/2", "amount": 750},
    ],
    "overdraft": {"stripe:balance": None},
    "reference": "ch_1:split",
    "metadata": {"stripe_object": "ch_1"},
}


def test_writes_and_reads_need_staff_or_a_token(token_client):
    # given
    anonymous = APIClient()
    plain = APIClient()
    plain.force_authenticate(get_user_model().objects.create_user("someone", password="x"))

    # then
    for client in (anonymous, plain):
        assert client.post(f"{BASE}/transactions/", SPLIT, format="json").status_code in (401, 403)
        assert client.get(f"{BASE}/accounts/").status_code in (401, 403)
        assert client.get(f"{BASE}/balance-sheet/").status_code in (401, 403)
    assert Transaction.objects.count() == 0
    response = token_client.post(f"{BASE}/transactions/", SPLIT, format="json")
    assert response.status_code == 201
    assert anonymous.get(f"{BASE}/transactions/").json()["code"] in (
        "not_authenticated",
        "permission_denied",
    )


def test_create_a_transaction_then_replay_and_conflict(staff_client):
    # when
    created = staff_client.post(f"{BASE}/transactions/", SPLIT, format="json")
    replayed = staff_client.post(f"{BASE}/transactions/", SPLIT, format="json")
    conflict = staff_client.post(
        f"{BASE}/transactions/", SPLIT | {"metadata": {"stripe_object": "ch_2"}}, format="json"
    )

    # then
    assert created.status_code == 201
    body = created.json()
    assert body["replayed"] is False
    assert body["dry_run"] is False
    tx = body["transaction"]
    assert tx["reference"] == "ch_1:split"
    assert tx["metadata"] == {"stripe_object": "ch_1"}
    assert tx["postings"] == SPLIT["postings"]
    assert tx["reverts"] is None
    assert tx["reverted_by"] is None
    assert replayed.status_code == 200
    assert replayed.json()["replayed"] is True
    assert replayed.json()["transaction"]["id"] == tx["id"]
    assert conflict.status_code == 409
    assert conflict.json()["code"] == "reference_conflict"
    assert Transaction.objects.count() == 1
    assert balance_get(address="restaurants:3", asset="USD/2") == 3750


@pytest.mark.parametrize(
    ("posting", "code"),
    [
        (
            {"source": "not valid", "destination": "x", "asset": "USD/2", "amount": 1},
            "invalid_address",
        ),
        (
            {"source": "world", "destination": "a:", "asset": "USD/2", "amount": 1},
            "invalid_address",
        ),
        ({"source": "world", "destination": "x", "asset": "dollars", "amount": 1}, "invalid_asset"),
        ({"source": "world", "destination": "x", "asset": "USD/2", "amount": 0}, "invalid_amount"),
        (
            {"source": "world", "destination": "x", "asset": "USD/2", "amount": -100},
            "invalid_amount",
        ),
        (
            {"source": "world", "destination": "x", "asset": "USD/2", "amount": 2**63},
            # beyond bigint: refused by the body guard before any service (config.input)
            "number_out_of_range",
        ),
        (
            {"source": "world", "destination": "x", "asset": "USD/2", "amount": 10**20},
            # beyond bigint: refused by the body guard before any service (config.input)
            "number_out_of_range",
        ),
        (
            {"source": "world", "destination": "x", "asset": "USD/2", "amount": 1e20},
            "invalid_amount",
        ),
        (
            {"source": "world", "destination": "x", "asset": "USD/2", "amount": "1.005"},
            "invalid_amount",
        ),
        (
            {"source": "world", "destination": "x", "asset": "USD/2", "amount": None},
            "invalid_amount",
        ),
        (
            {"source": "restaurants:9", "destination": "x", "asset": "USD/2", "amount": 1},
            "insufficient_funds",
        ),
        ({"source": 5, "destination": "x", "asset": "USD/2", "amount": 1}, "invalid_address"),
        ("not an object", "invalid_transaction"),
    ],
)
def test_bad_postings_are_400_with_a_code_and_write_nothing(staff_client, posting, code):
    # given
    before = table_counts()

    # when
    response = staff_client.post(f"{BASE}/transactions/", {"postings": [posting]}, format="json")

    # then
    assert response.status_code == 400
    body = response.json()
    assert body["code"] == code
    assert body["message"]
    assert table_counts() == before


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"postings": []},
        {"postings": "x"},
        {
            "postings": SPLIT["postings"],
            "script": {"plain": "send [USD/2 1] (source = @world destination = @a)"},
        },
        {"postings": SPLIT["postings"], "overdraft": {"stripe:balance": -1}},
        {"postings": SPLIT["postings"], "timestamp": "yesterday"},
        {"postings": SPLIT["postings"], "metadata": {"fee": 1.5}},
    ],
)
def test_malformed_requests_are_400(staff_client, body):
    before = table_counts()
    response = staff_client.post(f"{BASE}/transactions/", body, format="json")
    assert response.status_code == 400
    assert response.json()["code"]
    assert table_counts() == before


def test_invalid_json_is_400(staff_client):
    response = staff_client.generic(
        "POST", f"{BASE}/transactions/", "{not json", content_type="application/json"
    )
    assert response.status_code == 400
    assert response.json()["code"] == "parse_error"


def test_dry_run(staff_client):
    response = staff_client.post(
        f"{BASE}/transactions/", SPLIT | {"dry_run": True, "reference": None}, format="json"
    )
    assert response.status_code == 200
    assert response.json()["dry_run"] is True
    assert response.json()["transaction"]["id"] is None
    assert Transaction.objects.count() == 0


def test_backdated_transaction_and_detail(staff_client):
    response = staff_client.post(
        f"{BASE}/transactions/",
        {"postings": [p("world", "a", 5).as_dict()], "timestamp": "2024-02-01T10:00:00Z"},
        format="json",
    )
    tx_id = response.json()["transaction"]["id"]
    detail = staff_client.get(f"{BASE}/transactions/{tx_id}/").json()
    assert detail["timestamp"] == "2024-02-01T10:00:00Z"
    assert detail["postings"] == [p("world", "a", 5).as_dict()]
    assert staff_client.get(f"{BASE}/transactions/999999/").status_code == 404
    assert (
        staff_client.get(f"{BASE}/transactions/999999/").json()["code"] == "transaction_not_found"
    )


def test_revert_endpoint(staff_client):
    # given
    tx_id = staff_client.post(f"{BASE}/transactions/", SPLIT, format="json").json()["transaction"][
        "id"
    ]

    # when
    reverted = staff_client.post(f"{BASE}/transactions/{tx_id}/revert/", {}, format="json")
    again = staff_client.post(f"{BASE}/transactions/{tx_id}/revert/", {}, format="json")

    # then
    assert reverted.status_code == 201
    assert reverted.json()["transaction"]["reverts"] == tx_id
    assert again.status_code == 409
    assert again.json()["code"] == "already_reverted"
    assert (
        staff_client.get(f"{BASE}/transactions/{tx_id}/").json()["reverted_by"]
        == (reverted.json()["transaction"]["id"])
    )
    assert balance_get(address="restaurants:3", asset="USD/2") == 0


def test_transactions_list_filters(staff_client):
    # given
    transaction_post(
        postings=[p("world", "restaurants:1", 10)],
        metadata={"stripe_object": "ch_1"},
        reference="a",
    )
    transaction_post(postings=[p("world", "riders:1", 10)], metadata={"stripe_object": "re_1"})

    def refs(query: str) -> list:
        response = staff_client.get(f"{BASE}/transactions/?{query}")
        assert response.status_code == 200
        return [tx["metadata"]["stripe_object"] for tx in response.json()["results"]]

    # then
    assert refs("") == ["re_1", "ch_1"]
    assert refs("account=restaurants:*") == ["ch_1"]
    assert refs("destination=riders:1") == ["re_1"]
    assert refs("reference=a") == ["ch_1"]
    assert refs("metadata[stripe_object]=re_1") == ["re_1"]
    assert refs("start_time=2000-01-01T00:00:00Z&end_time=2000-01-02T00:00:00Z") == []
    assert (
        staff_client.get(f"{BASE}/transactions/?start_time=soon").json()["code"]
        == "invalid_timestamp"
    )
    assert (
        staff_client.get(f"{BASE}/transactions/?account=bad address").json()["code"]
        == "invalid_address"
    )


def test_accounts_list_detail_and_metadata(staff_client):
    # given
    transaction_post(
        postings=[
            p("world", "restaurants:1", 10),
            p("world", "restaurants:1:payouts:1", 3),
            p("world", "riders:1", 1, "EUR/2"),
        ]
    )

    # when / then: list with a pattern, with balances
    response = staff_client.get(f"{BASE}/accounts/?pattern=restaurants:*")
    assert response.status_code == 200
    assert [(a["address"], a["balances"]) for a in response.json()["results"]] == [
        ("restaurants:1", {"USD/2": 10})
    ]
    # detail with volumes
    detail = staff_client.get(f"{BASE}/accounts/world/").json()
    assert detail["volumes"] == {
        "EUR/2": {"input": 0, "output": 1, "balance": -1},
        "USD/2": {"input": 0, "output": 13, "balance": -13},
    }
    assert staff_client.get(f"{BASE}/accounts/nobody/").status_code == 404
    assert staff_client.get(f"{BASE}/accounts/a::b/").json()["code"] == "invalid_address"
    assert staff_client.get(f"{BASE}/accounts/?pattern=a:%25").json()["code"] == "invalid_pattern"
    # metadata: set, filter, history, delete
    set_response = staff_client.post(
        f"{BASE}/accounts/restaurants:1/metadata/", {"commission": "15%"}, format="json"
    )
    assert set_response.json() == {"address": "restaurants:1", "metadata": {"commission": "15%"}}
    assert (
        staff_client.post(
            f"{BASE}/accounts/restaurants:1/metadata/", {"n": 1}, format="json"
        ).json()["code"]
        == "invalid_metadata"
    )
    listed = staff_client.get(f"{BASE}/accounts/?metadata[commission]=15%25").json()["results"]
    assert [a["address"] for a in listed] == ["restaurants:1"]
    deleted = staff_client.delete(f"{BASE}/accounts/restaurants:1/metadata/commission/")
    assert deleted.json()["metadata"] == {}
    again = staff_client.delete(f"{BASE}/accounts/restaurants:1/metadata/commission/")
    assert again.status_code == 404
    assert again.json()["code"] == "metadata_key_not_found"
    history = staff_client.get(f"{BASE}/accounts/restaurants:1/metadata/").json()["history"]
    assert [(h["key"], h["value"], h["actor"]) for h in history] == [
        ("commission", "15%", "finance"),
        ("commission", None, "finance"),
    ]


def test_bulk_endpoint(staff_client):
    items = [
        {"postings": [p("world", "a", 5).as_dict()], "reference": "b1"},
        {"postings": [p("a", "b", 9).as_dict()]},
        {"postings": [p("world", "c", 1).as_dict()], "timestamp": "2024-01-01T00:00:00Z"},
    ]
    atomic = staff_client.post(f"{BASE}/transactions/bulk/", {"items": items}, format="json")
    assert atomic.status_code == 400
    assert atomic.json()["code"] == "insufficient_funds"
    assert Transaction.objects.count() == 0
    independent = staff_client.post(
        f"{BASE}/transactions/bulk/", {"items": items, "atomic": False}, format="json"
    )
    assert independent.status_code == 200
    results = independent.json()["results"]
    assert [r["ok"] for r in results] == [True, False, True]
    assert results[1]["error"]["code"] == "insufficient_funds"
    assert results[2]["transaction"]["timestamp"] == "2024-01-01T00:00:00Z"


def test_balances_and_balance_sheet_endpoints(staff_client):
    transaction_post(
        postings=[p("stripe:balance", "orders:1", 1000)], overdraft={"stripe:balance": None}
    )
    balances = staff_client.get(f"{BASE}/balances/?pattern=orders:*").json()
    assert balances["totals"] == {"USD/2": 1000}
    assert balances["accounts"] == {"orders:1": {"USD/2": 1000}}
    sheet = staff_client.get(f"{BASE}/balance-sheet/").json()
    assert sheet["balanced"] is True
    (usd,) = sheet["assets"]
    assert usd["totals"]["asset"] == 1000
    assert usd["totals"]["liability"] == 1000
    past = staff_client.get(f"{BASE}/balance-sheet/?at=2000-01-01T00:00:00Z").json()
    assert past["assets"] == []
    assert staff_client.get(f"{BASE}/balance-sheet/?at=nope").status_code == 400


def test_openapi_schema_lists_the_ledger(staff_client):
    response = staff_client.get("/api/schema/", HTTP_ACCEPT="application/json")
    assert response.status_code == 200
    paths = response.json()["paths"]
    assert "/api/v1/ledger/transactions/" in paths
    assert "/api/v1/ledger/transactions/{transaction_id}/revert/" in paths
    assert "/api/v1/ledger/balance-sheet/" in paths


def test_ids_beyond_bigint_are_404_not_500(staff_client):
    huge = 10**30
    assert staff_client.get(f"{BASE}/transactions/{huge}/").status_code == 404
    response = staff_client.post(f"{BASE}/transactions/{huge}/revert/", {}, format="json")
    assert response.status_code == 404
    assert response.json()["code"] == "transaction_not_found"
