"""A typed client generated from /api/schema/ by openapi-python-client (into a temporary
directory, no network) calls the live server: if the schema lied about an envelope, a type or
an error body, the generated models would fail to parse the answers."""

from __future__ import annotations

import importlib
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from marketplace.models import Restaurant
from tests.auth import ALL_ROLES, make_user, token_for

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

PACKAGE = "eats_api_client"


@pytest.fixture
def generated(tmp_path: Path, live_server: Any) -> Iterator[Any]:
    # given: the schema the server serves, and a client generated from it
    reader = make_user("schema-reader", superuser=True)
    response = requests.get(
        f"{live_server.url}/api/schema/",
        params={"format": "json"},
        headers={"Authorization": f"Token {token_for(reader)}"},
        timeout=30,
    )
    assert response.status_code == 200
    schema_path = tmp_path / "schema.json"
    schema_path.write_text(json.dumps(response.json()))
    config = tmp_path / "config.json"
    # No post hooks: the generated code is not formatted (ruff is not needed to import it).
    config.write_text(json.dumps({"post_hooks": [], "package_name_override": PACKAGE}))
    generator = Path(sys.executable).with_name("openapi-python-client")
    done = subprocess.run(
        [
            str(generator),
            "generate",
            "--path",
            str(schema_path),
            "--output-path",
            str(tmp_path / PACKAGE),
            "--meta",
            "none",
            "--config",
            str(config),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    # The one warning allowed: the invoice PDF's media type has no model (bytes are returned).
    output = done.stdout + done.stderr
    warnings = [line for line in output.splitlines() if line.startswith("WARNING")]
    assert warnings == ["WARNING parsing GET /api/v1/invoices/{id}/pdf/ within v1."], output
    sys.path.insert(0, str(tmp_path))
    try:
        yield lambda name: importlib.import_module(f"{PACKAGE}.{name}")
    finally:
        sys.path.remove(str(tmp_path))
        for name in [m for m in sys.modules if m == PACKAGE or m.startswith(f"{PACKAGE}.")]:
            del sys.modules[name]


def test_a_generated_typed_client_calls_the_live_server(generated: Any, live_server: Any) -> None:
    client_module = generated("client")
    models = generated("models")
    api = "api.v1."
    user = make_user("integrator", roles=ALL_ROLES)
    client = client_module.AuthenticatedClient(
        base_url=live_server.url, token=token_for(user), prefix="Token"
    )
    Restaurant.objects.create(name="Chez Typed")

    # when: a paginated list, through the typed client
    accounts = generated(api + "v1_ledger_accounts_list").sync(client=client, limit=5)
    restaurants = generated(api + "v1_restaurants_list").sync(client=client)
    payouts = generated(api + "v1_payouts_list").sync(client=client, limit=2)
    transactions = generated(api + "v1_ledger_transactions_list").sync(client=client)

    # then: the envelopes and the items parse as the documented models
    assert isinstance(accounts, models.PaginatedAccountList)
    assert accounts.count == 0 and accounts.results == []
    assert isinstance(payouts, models.PaginatedPayoutList) and payouts.results == []
    assert isinstance(transactions, models.PaginatedTransactionList)
    assert [r.name for r in restaurants] == ["Chez Typed"]
    assert isinstance(restaurants[0], models.RestaurantOutput)

    # when: a write with a typed body, and a refused one
    metadata_set = generated(api + "v1_ledger_accounts_metadata_create")
    written = metadata_set.sync_detailed(
        address="restaurants:42",
        client=client,
        body=models.V1LedgerAccountsMetadataCreateBody.from_dict({"tier": "gold"}),
    )
    refused = generated(api + "v1_topups_create").sync(
        client=client, body=models.TopupCreateInput(amount=83, asset="ÙK")
    )
    anonymous = generated(api + "v1_orders_list").sync_detailed(
        client=client_module.Client(base_url=live_server.url)
    )

    # then
    assert written.status_code == 200, written.content
    assert written.parsed.metadata.to_dict() == {"tier": "gold"}
    assert isinstance(refused, models.ErrorBody) and refused.code == "invalid"
    assert anonymous.status_code == 401 and isinstance(anonymous.parsed, models.ErrorBody)
