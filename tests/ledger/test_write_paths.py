"""The PostgreSQL one-statement write path and the portable Python path (SQLite's) give the
same results for the same requests: same transactions, same balances, same errors. For
Numscript that compares the two designs too: on PostgreSQL a script reads unlocked and its
write checks the reads under lock; on the portable path it reads under locks as it asks."""

from __future__ import annotations

import re
from typing import Any

import pytest
from django.db import transaction
from django.test import override_settings
from hypothesis import HealthCheck, example, given, settings
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
# Templates that read balances in each way the interpreter can: all of a source (`*`), a
# source list taken in order, a bounded overdraft, a balance() the postings do not touch.
SCRIPTS = [
    "vars { account $s account $d }\nsend [USD/2 *] ( source = $s destination = $d )",
    "vars { account $s account $d monetary $m }\nsend $m ( source = { $s $d } destination = @c:1 )",
    "vars { account $s monetary $m }\n"
    "send $m ( source = $s allowing overdraft up to [USD/2 20] destination = @b )",
    "vars { account $s account $d monetary $m = balance($s, USD/2) }\n"
    "send $m ( source = @world destination = $d )",
]
script_request = st.fixed_dictionaries(
    {
        "script": st.sampled_from(SCRIPTS),
        "vars": st.fixed_dictionaries(
            {
                "s": st.sampled_from(ACCOUNTS[1:]),
                "d": st.sampled_from(ACCOUNTS[1:]),
                "m": st.builds(lambda n: f"USD/2 {n}", st.integers(1, 60)),
            }
        ),
        "reference": st.one_of(st.none(), st.sampled_from(["r1", "r2"])),
    }
)
operation = st.one_of(
    st.tuples(st.just("post"), request),
    st.tuples(st.just("bulk"), st.lists(request, min_size=1, max_size=3)),
    st.tuples(st.just("post"), script_request),
)
MAX = 2**63 - 1


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
# A volume past the bigint range on one key and missing funds on another: the funds error is
# the answer on both paths (the PostgreSQL path used to answer invalid_amount: `a` holds
# MAX in and out on the shard row the next credit goes to).
@example(
    operations=[
        ("post", {"postings": [PostingInput("world", "world", "EUR/2", MAX)]}),
        (
            "bulk",
            [
                {"postings": [PostingInput("world", "a", "USD/2", MAX)]},
                {"postings": [PostingInput("a", "world", "USD/2", MAX)]},
            ],
        ),
        ("post", {"postings": [PostingInput("b", "a", "USD/2", MAX)]}),
    ]
)
# the same on the writer's own shard row, whichever it is: `a`'s credit would overflow it
@example(
    operations=[
        ("post", {"postings": [PostingInput("world", "a", "USD/2", MAX)]}),
        ("post", {"postings": [PostingInput("b", "a", "USD/2", MAX)]}),
        ("post", {"postings": [PostingInput("world", "a", "USD/2", 1)]}),
    ]
)
def test_both_write_paths_agree(operations):
    assert _run("postgres", operations) == _run("portable", operations)


@pytest.mark.django_db
def test_missing_funds_is_the_answer_before_a_volume_overflow(write_path):
    # given: `a` took MAX in on this writer's shard row
    transaction_post(postings=[PostingInput("world", "a", "USD/2", MAX)])

    # when: an empty account sends MAX more to `a` (that row would pass the bigint range)
    with pytest.raises(LedgerError) as funds:
        transaction_post(postings=[PostingInput("b", "a", "USD/2", MAX)])
    # and world sends it 1 more (no funds check: the overflow is the answer)
    with pytest.raises(LedgerError) as overflow:
        transaction_post(postings=[PostingInput("world", "a", "USD/2", 1)])

    # then
    assert funds.value.code == "insufficient_funds"
    assert funds.value.extra["account"] == "b"
    assert overflow.value.code == "invalid_amount"
    assert Transaction.objects.count() == 1
