"""Through the real `stripe` client against the local Stripe emulator: import (auto-paging,
expand=data.source, idempotent), Stripe's balance against the ledger, a 10,000-transaction
window, and a dropped webhook found at Stripe and replayed."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from ledger.domain import PostingInput, TxInput
from ledger.services import transactions_post_bulk
from reconciliation.matching import Outcome
from reconciliation.models import ReconciliationItem, StripeBalanceTransaction
from reconciliation.services import (
    balance_transactions_import,
    reconciliation_run,
    run_repairs_apply,
    stripe_balance_fetch,
)
from stripe_emulator import EmulatorServer
from stripe_gateway.models import StripeEvent
from stripe_gateway.registry import HANDLERS, Registration
from tests.reconciliation.helpers import HOT

pytestmark = pytest.mark.django_db
ASSET = "USD/2"


@pytest.fixture
def handlers() -> Iterator[dict[str, Registration]]:
    """An empty handler table for the test (the apps' own handlers are set aside)."""
    saved = dict(HANDLERS)
    HANDLERS.clear()
    try:
        yield HANDLERS
    finally:
        HANDLERS.clear()
        HANDLERS.update(saved)


@pytest.fixture
def emulator(emulator_factory: Any) -> EmulatorServer:
    return emulator_factory(port=0, api_key="sk_test_reconciliation")


def call(server: EmulatorServer, path: str, **params: Any) -> dict[str, Any]:
    status, body = server.request("POST", path, params)
    assert status == 200, body
    return body


def pay(server: EmulatorServer, amount: int, pm: str = "pm_card_visa") -> dict[str, Any]:
    pi = call(
        server,
        "/v1/payment_intents",
        amount=amount,
        currency="usd",
        payment_method=pm,
        confirm="true",
        metadata={"order_id": str(amount)},
    )
    server.settle(5)  # asynchronous capture: the balance transaction is attached just after
    charge = server.state.store.get(pi["latest_charge"])
    assert charge is not None and charge["balance_transaction"]
    return {"pi": pi["id"], "charge": charge["id"], "txn": charge["balance_transaction"]}


def window(server: EmulatorServer) -> tuple[datetime, datetime]:
    now = datetime.fromtimestamp(server.state.now(), tz=UTC)
    return now - timedelta(hours=1), now + timedelta(hours=1)


def payment_tx(charge: str, txn: dict[str, Any], *, with_fee: bool = True) -> TxInput:
    postings = [PostingInput("stripe:balance", f"orders:{charge}", ASSET, txn["amount"])]
    if with_fee:
        postings.append(PostingInput("platform:stripe_fees", "stripe:balance", ASSET, txn["fee"]))
    return TxInput(
        postings=postings,
        metadata={
            "stripe_object": charge,
            "stripe_balance_transaction": txn["id"],
            "flow": "payment",
        },
        overdraft=HOT,
    )


def test_import_pages_expands_sources_and_is_idempotent(emulator: EmulatorServer):
    # given one of each money movement at Stripe
    paid = pay(emulator, 4200)
    call(emulator, "/v1/refunds", charge=paid["charge"], amount=1000)
    disputed = pay(emulator, 3000, pm="pm_card_createDispute")
    call(emulator, "/v1/topups", amount=50_000, currency="usd")
    account = call(emulator, "/v1/accounts", type="express")
    call(emulator, "/v1/transfers", amount=1500, currency="usd", destination=account["id"])
    call(emulator, "/v1/payouts", amount=700, currency="usd")
    start, end = window(emulator)

    # when imported twice (page size 100: one page here)
    first = balance_transactions_import(window_start=start, window_end=end)
    second = balance_transactions_import(window_start=start, window_end=end)

    # then
    assert (first.seen, first.created, first.updated) == (7, 7, 0)
    assert (second.seen, second.created, second.updated, second.unchanged) == (7, 0, 0, 7)
    rows = {
        r.reporting_category: r
        for r in StripeBalanceTransaction.objects.exclude(reporting_category="charge")
    }
    assert set(rows) == {"refund", "dispute", "topup", "transfer", "payout"}
    assert rows["refund"].source_type == "refund"
    assert rows["refund"].source_object["charge"] == paid["charge"]
    assert rows["dispute"].source_type == "dispute"
    assert rows["dispute"].fee == 1500
    assert rows["topup"].source_key.startswith("tu_")
    assert rows["payout"].net == -700
    charge_row = StripeBalanceTransaction.objects.get(id=paid["txn"])
    assert charge_row.asset == ASSET
    assert charge_row.source_object["payment_intent"] == paid["pi"]
    assert charge_row.raw["source"] == paid["charge"]
    assert disputed["charge"] in {
        r.source_object.get("charge") for r in rows.values() if r.source_object
    }
    assert stripe_balance_fetch() == {
        ASSET: {
            "available": 4200
            + 3000
            + 50_000
            - 1000
            - 1500
            - 700
            - 3000
            - 1500
            - sum(
                StripeBalanceTransaction.objects.filter(reporting_category="charge").values_list(
                    "fee", flat=True
                )
            ),
            "pending": 0,
        }
    }


def test_totals_compare_the_ledger_with_stripes_balance(emulator: EmulatorServer):
    # given three payments, two booked, one missing in the ledger
    payments = [pay(emulator, amount) for amount in (1000, 2000, 3000)]
    txns: dict[str, dict[str, Any]] = {}
    rows = {p["txn"]: p for p in payments}
    start, end = window(emulator)
    balance_transactions_import(window_start=start, window_end=end)
    for txn in StripeBalanceTransaction.objects.filter(id__in=list(rows)):
        txns[txn.id] = {"id": txn.id, "amount": txn.amount, "fee": txn.fee}
    booked = [payment_tx(rows[t]["charge"], txns[t]) for t in list(rows)[:2]]
    transactions_post_bulk(items=booked)
    missing_net = StripeBalanceTransaction.objects.get(id=payments[2]["txn"]).net

    # when
    run = reconciliation_run(window_start=start, window_end=end)

    # then the drift is exactly the missing payment, explained by its item
    totals = run.totals[ASSET]
    assert totals["stripe_total"] == sum(t.net for t in StripeBalanceTransaction.objects.all())
    assert totals["drift"] == -missing_net
    assert totals["explained"] == -missing_net
    assert totals["unexplained"] == 0
    assert [i["key"] for i in totals["explaining_items"]] == [payments[2]["charge"]]


@pytest.mark.slow
def test_a_window_of_10000_balance_transactions_through_the_real_client(
    emulator: EmulatorServer, settings: Any, handlers: dict[str, Registration]
):
    # given 10,000 card payments at Stripe; the ledger has all but the last 5, and 10 of them
    # were booked without their fee
    settings.RECONCILIATION_EVENT_SCAN_LIMIT = 500
    created = time.perf_counter()
    payments = [pay(emulator, 1000 + i) for i in range(10_000)]
    by_txn = {
        t["id"]: t for t in emulator.state.objects("balance_transaction") if t["type"] == "charge"
    }
    items = [
        payment_tx(p["charge"], by_txn[p["txn"]], with_fee=i % 1000 != 7)
        for i, p in enumerate(payments[:-5])
    ]
    for start_index in range(0, len(items), 1000):
        transactions_post_bulk(items=items[start_index : start_index + 1000])
    setup_seconds = time.perf_counter() - created
    start, end = window(emulator)

    # when
    run = reconciliation_run(window_start=start, window_end=end)

    # then
    assert run.imported == {"seen": 10_000, "created": 10_000, "updated": 0, "unchanged": 0}
    assert run.counts == {"matched": 9_985, "fee_missing": 10, "missing_in_ledger": 5}
    assert run.repairs["fees_booked"] == 10
    missing = ReconciliationItem.objects.filter(run=run, outcome=Outcome.MISSING_IN_LEDGER)
    assert {i.key for i in missing} == {p["charge"] for p in payments[-5:]}
    # the events are found at Stripe (the inbox never got them) but no handler is registered
    # for payment events in this test, so the replay is offered for review, not applied
    assert all("payment_intent.succeeded" in i.suggested_action for i in missing)
    assert run.totals[ASSET]["unexplained"] == 0
    assert StripeBalanceTransaction.objects.count() == 10_000
    again = reconciliation_run(window_start=start, window_end=end)
    assert again.imported["unchanged"] == 10_000
    assert again.counts == {"matched": 9_995, "missing_in_ledger": 5}
    print(f"10k window: setup {setup_seconds:.1f}s, run {run.match_seconds}s matching")


def _book_payment_event(event: StripeEvent) -> None:
    """A stand-in payment handler (the marketplace's own is tested in test_dropped_webhook)."""
    charge = event.data_object
    txn = StripeBalanceTransaction.objects.filter(source_id=charge["id"]).first()
    fee = txn.fee if txn else 0
    transactions_post_bulk(
        items=[
            TxInput(
                postings=[
                    PostingInput(
                        "stripe:balance", f"orders:{charge['id']}", ASSET, charge["amount"]
                    ),
                    PostingInput("platform:stripe_fees", "stripe:balance", ASSET, fee),
                ],
                reference=f"payment:{charge['id']}",
                metadata={"stripe_object": charge["id"], "flow": "payment"},
                overdraft=HOT,
            )
        ]
    )


def test_a_payment_event_the_inbox_never_received_is_found_at_stripe_and_replayed(
    emulator: EmulatorServer, handlers: dict[str, Registration]
):
    # given a charge.succeeded handler, and a payment whose webhook never reached us
    handlers["charge.succeeded"] = Registration("charge.succeeded", _book_payment_event)
    paid = pay(emulator, 2500)
    start, end = window(emulator)
    found = reconciliation_run(window_start=start, window_end=end)
    item = ReconciliationItem.objects.get(run=found, key=paid["charge"])
    assert item.outcome == Outcome.MISSING_IN_LEDGER
    event_id = item.repair["event_id"]
    assert item.safe
    assert item.suggested_action == (
        f"payment webhook for {paid['charge']} never reached us: replay event {event_id} "
        "(charge.succeeded, fetched from Stripe)"
    )
    assert not StripeEvent.objects.filter(stripe_id=event_id).exists()

    # when the safe repairs are applied and the window runs again
    report = run_repairs_apply(run=found)
    after = reconciliation_run(window_start=start, window_end=end)

    # then the event was fetched, processed, and the payment matches
    assert (report.applied, report.failed) == (1, 0)
    assert StripeEvent.objects.get(stripe_id=event_id).status == StripeEvent.Status.PROCESSED
    assert after.counts == {"matched": 1}
    assert after.totals[ASSET]["drift"] == 0


def test_the_nightly_task_reconciles_yesterday(emulator: EmulatorServer):
    from reconciliation.models import ReconciliationRun
    from staff.tasks import finance_nightly  # the one nightly entry point (beat)

    # when beat fires the task
    run_id = finance_nightly.apply().get()

    # then yesterday (UTC) was reconciled, through Stripe, as a run of its own
    run = ReconciliationRun.objects.get(pk=run_id)
    today = datetime.now(tz=UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    assert (run.window_start, run.window_end) == (today - timedelta(days=1), today)
    assert (run.trigger, run.status) == ("beat", ReconciliationRun.Status.SUCCEEDED)
    assert run.imported == {"seen": 0, "created": 0, "updated": 0, "unchanged": 0}
    assert set(run.totals) == {ASSET}
