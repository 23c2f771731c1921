"""Whatever a client sends to the posting endpoint, the answer is a JSON error or a success,
never a 500 (and a failed request writes nothing)."""

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.ledger.helpers import table_counts

json_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=12),
    st.sampled_from(["world", "a:b", "USD/2", "JPY", "stripe:balance", "", "a::b", "x" * 300]),
)
json_values = st.recursive(
    json_scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=4), st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=12,
)
posting = st.fixed_dictionaries(
    {},
    optional={
        "source": json_values,
        "destination": json_values,
        "asset": json_values,
        "amount": json_values,
    },
)
body = st.fixed_dictionaries(
    {},
    optional={
        "postings": st.one_of(st.lists(posting, max_size=3), json_values),
        "reference": json_values,
        "metadata": json_values,
        "timestamp": json_values,
        "overdraft": json_values,
        "dry_run": json_values,
        "script": json_values,
    },
)


@pytest.mark.django_db
@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(payload=body)
def test_posting_endpoint_never_answers_500(staff_client, payload):
    before = table_counts()
    response = staff_client.post("/api/v1/ledger/transactions/", payload, format="json")
    assert response.status_code in (200, 201, 400, 409), response.content
    data = response.json()
    if response.status_code >= 400:
        assert isinstance(data["code"], str) and data["code"]
        assert table_counts() == before
