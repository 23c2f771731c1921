"""The payout flows: their spec files, and running them batched against the ledger."""

from __future__ import annotations

from io import StringIO
from pathlib import Path

import pytest
from django.core.management import call_command
from django.db import transaction

from ledger.errors import InsufficientFunds
from ledger.models import Transaction
from payouts.flows import FLOWS, FlowRun, flow_post, flows_post, flows_prepare, monetary
from tests.payouts.helpers import bal, credit, debit

FLOWS_DIR = Path(__file__).resolve().parents[2] / "payouts" / "flows"


def test_every_flow_has_a_passing_spec_file() -> None:
    for name in FLOWS:
        assert (FLOWS_DIR / f"{name}.num").exists()
        assert (FLOWS_DIR / f"{name}.num.specs.json").exists()
    out = StringIO()
    call_command("numscript", "test", str(FLOWS_DIR), stdout=out)
    assert "4 passed" in out.getvalue() and "0 failed" in out.getvalue()


def reserve(payee: str, payout: str, keep: int = 0, ref: str = "r") -> FlowRun:
    return FlowRun(
        "reserve",
        vars={"payee": payee, "payout": payout, "asset": "USD/2", "keep": monetary("USD/2", keep)},
        reference=f"test-reserve:{ref}",
    )


@pytest.mark.django_db
def test_a_batch_reads_locked_balances_and_posts_once() -> None:
    credit("restaurants:901", 1_000)
    credit("restaurants:902", 50)
    debit("restaurants:903", 10)
    with transaction.atomic():
        prepared = flows_prepare(
            [
                reserve("restaurants:901", "restaurants:901:payouts:001", keep=100, ref="a"),
                reserve("restaurants:902", "restaurants:902:payouts:001", ref="b"),
                reserve("restaurants:903", "restaurants:903:payouts:001", ref="c"),
            ]
        )
        assert [p.amount_to(p.run.vars["payout"]) for p in prepared] == [900, 50, 0]
        flows_post(prepared[:2])  # the caller drops what it does not want
    assert bal("restaurants:901") == 100 and bal("restaurants:901:payouts:001") == 900
    assert bal("restaurants:902") == 0
    assert bal("restaurants:903") == -10
    tx = Transaction.objects.get(reference="test-reserve:a")
    assert tx.metadata == {"flow": "payout-reserve"}
    # the same references again: not re-run, found
    with transaction.atomic():
        again = flows_prepare([reserve("restaurants:901", "restaurants:901:payouts:001", ref="a")])
        assert again[0].already_posted and again[0].transaction_id == tx.pk
        flows_post(again)
    assert Transaction.objects.filter(reference="test-reserve:a").count() == 1


@pytest.mark.django_db
def test_settle_cannot_take_more_than_the_payout_account_holds() -> None:
    credit("restaurants:904:payouts:001", 100)
    with pytest.raises(InsufficientFunds), transaction.atomic():
        flow_post(
            FlowRun(
                "settle",
                vars={"payout": "restaurants:904:payouts:001", "amount": monetary("USD/2", 101)},
                reference="test-settle:x",
            )
        )
    assert not Transaction.objects.filter(reference="test-settle:x").exists()


def test_flows_need_a_transaction() -> None:
    with pytest.raises(RuntimeError, match="open transaction"):
        flows_prepare([reserve("restaurants:905", "restaurants:905:payouts:001")])
