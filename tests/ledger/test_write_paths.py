"""The PostgreSQL one-statement write path and the portable Python path (SQLite's) give the
same results for the same requests: same transactions, same balances, same errors."""

from __future__ import annotations

import re
from typing import Any

import pytest
from django.db import transaction
from django.test import override_settings
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ledger.domain import PostingInput
from ledger.errors import LedgerError
from ledger.models import Posting, Transaction
from ledger.selectors import balances_get
from ledger.services import transaction_post, transactions_post_bulk

ACCOUNTS = ["world", "a", "b", "c:1"]
posting = st.builds(
    PostingInput,
    source=st.sampled_from(ACCOUNTS),
    destination=st.sampled_from(ACCOUNTS),
    asset=st.sampled_from(["USD/2", "EUR/2"]),
    amount=st.one_of(st.integers(1, 100), st.just(2**63 - 1)),
)
request = st.fixed_dictionaries(
    {
        "postings": st.lists(posting, min_size=1, max_size=4),
        "overdraft": st.dictionaries(
            st.sampled_from(ACCOUNTS[1:]), st.one_of(st.none(), st.integers(0, 50)), max_size=2
        ),
        "reference": st.one_of(st.none(), st.sampled_from(["r1", "r2"])),
    }
)
operation = st.one_of(
    st.tuples(st.just("post"), request),
    st.tuples(st.just("bulk"), st.lists(request, min_size=1, max_size=3)),
)


def _run(path: str, operations: list[tuple[str, Any]]) -> dict[str, Any]:
    outcomes: list[Any] = []
    with override_settings(LEDGER_WRITE_PATH=path), transaction.atomic():
        for kind, body in operations:
            try:
                if kind == "post":
                    r = transaction_post(**body)
                    outcomes.append(("ok", r.replayed, r.postings))
                else:
                    rs = transactions_post_bulk(items=body)
                    outcomes.append(("ok", [(x.result.replayed, x.result.postings) for x in rs]))
            except LedgerError as exc:
                # ids differ between the two runs (the sequence moved on): compare without
                extra = {k: v for k, v in exc.extra.items() if k != "transaction_id"}
                message = re.sub(r"transaction \d+", "transaction N", exc.message)
                outcomes.append(("error", exc.code, message, extra))
        state = {
            "outcomes": outcomes,
            "balances": balances_get().accounts,
            "transactions": list(
                Transaction.objects.order_by("id").values_list(
                    "reference", "metadata", "idempotency_hash", "reverts_id"
                )
            ),
            "postings": list(
                Posting.objects.order_by("transaction_id", "index").values_list(
                    "index", "source__address", "destination__address", "asset", "amount"
                )
            ),
        }
        transaction.set_rollback(True)
    return state


@pytest.mark.django_db
@settings(
    max_examples=120,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(operations=st.lists(operation, min_size=1, max_size=6))
def test_both_write_paths_agree(operations):
    assert _run("postgres", operations) == _run("portable", operations)
