"""The flow runner's one overdraft rule: batch mode takes what each run may overdraw from the
template's own `allowing ... overdraft` clauses (no second list), and the bulk write holds
every other account at zero."""

from __future__ import annotations

from pathlib import Path

import pytest
from django.db import transaction

from ledger.errors import InsufficientFunds
from ledger.selectors import balance_get
from ledger.services import transaction_post
from ledger.services.flows import FlowBatch, FlowBook, FlowRun, flows_post, flows_prepare

TEMPLATES = {
    "unbounded": """
vars { account $to  monetary $amount }
send $amount ( source = @bank:float allowing unbounded overdraft  destination = $to )
""",
    "bounded": """
vars { account $from  account $to  monetary $amount  monetary $limit }
send $amount (
  source = {
    @reserve:main allowing overdraft up to [USD/2 300]
    $from allowing overdraft up to $limit
  }
  destination = $to
)
""",
    "nested": """
vars { account $to  monetary $amount }
send $amount (
  source = {
    50% from @a:one allowing unbounded overdraft
    remaining from max [USD/2 999] from @world
  }
  destination = $to
)
""",
    "plain": """
vars { account $from  account $to  monetary $amount }
send $amount ( source = $from  destination = $to )
""",
    "from_meta": """
vars {
  account $to
  monetary $amount
  account $from = meta(@config, "source")
}
send $amount ( source = $from allowing unbounded overdraft  destination = $to )
""",
}


@pytest.fixture
def book(tmp_path: Path) -> FlowBook:
    for name, source in TEMPLATES.items():
        (tmp_path / f"{name}.num").write_text(source)
    return FlowBook(tmp_path, tuple(TEMPLATES), label="test")


def test_the_overdraft_is_read_from_the_templates_clauses(book: FlowBook) -> None:
    # when / then: literal and variable accounts, literal and variable bounds, nested sources;
    # world is always unbounded and never listed; a template without clauses allows nothing
    assert book.overdraft("unbounded", {"to": "x", "amount": "USD/2 5"}) == {"bank:float": None}
    assert book.overdraft(
        "bounded", {"from": "shops:1", "to": "x", "amount": "USD/2 5", "limit": "USD/2 40"}
    ) == {"reserve:main": 300, "shops:1": 40}
    assert book.overdraft("nested", {"to": "x", "amount": "USD/2 5"}) == {"a:one": None}
    assert book.overdraft("plain", {"from": "a", "to": "b", "amount": "USD/2 5"}) == {}


def test_a_clause_known_only_when_run_cannot_be_batched(book: FlowBook) -> None:
    with pytest.raises(ValueError, match="not a variable given"):
        book.overdraft("from_meta", {"to": "x", "amount": "USD/2 5"})


@pytest.mark.django_db
def test_a_batch_overdraws_exactly_what_the_templates_allow(book: FlowBook) -> None:
    # given: shops:1 holds 100; nothing else is funded
    transaction_post(
        postings=[{"source": "world", "destination": "shops:1", "asset": "USD/2", "amount": 100}]
    )
    batch = FlowBatch(
        book=book,
        locked={
            "unbounded": lambda v: [],
            "bounded": lambda v: [("reserve:main", "USD/2"), (v["from"], "USD/2")],
            "plain": lambda v: [(v["from"], "USD/2")],
        },
    )
    bounded = {"from": "shops:1", "to": "out", "amount": "USD/2 440", "limit": "USD/2 40"}

    # when: float overdraws without bound, reserve:main down to -300, shops:1 down to -40
    with transaction.atomic():
        flows_post(
            batch,
            flows_prepare(
                batch,
                [
                    FlowRun("unbounded", {"to": "out", "amount": "USD/2 7000"}, "t:1"),
                    FlowRun("bounded", bounded, "t:2"),
                ],
            ),
        )
    # then
    assert balance_get(address="bank:float", asset="USD/2") == -7000
    assert balance_get(address="reserve:main", asset="USD/2") == -300
    assert balance_get(address="shops:1", asset="USD/2") == -40

    # when: a template without a clause may not take shops:1 below zero
    with pytest.raises(InsufficientFunds), transaction.atomic():
        flows_prepare(
            batch, [FlowRun("plain", {"from": "shops:1", "to": "out", "amount": "USD/2 1"}, "t:3")]
        )
