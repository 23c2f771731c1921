"""A worker killed between the parts of each step (message lost after the commit, killed
before, during or after the Stripe call, lease taken over), simulated by raising `Crash` (a
BaseException: nothing catches it, the lease is not released, the open transaction rolls
back). After the lease expires the sweeper's drive resumes from the state
left behind; every payout ends paid (or returned), with exactly one transfer at Stripe and a
ledger that adds up."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from ledger.models import Transaction
from payouts.models import Payout, PayoutEvent
from payouts.services import (
    driving,
    payouts_drive,
    payouts_schedule,
    payouts_sweep,
    returns,
    scheduling,
)
from stripe_emulator import EmulatorServer
from stripe_gateway.client import StripeGateway
from tests.payouts.helpers import (
    Crash,
    assert_books,
    bal,
    drive_until_done,
    expire_leases,
    key,
    make_payee,
)

pytestmark = pytest.mark.django_db


def crash_after(real: Callable[..., Any], calls: list[int] | None = None) -> Callable[..., Any]:
    """Run `real`, then die (the effect happened, the caller never learns)."""

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        real(*args, **kwargs)
        if calls is not None:
            calls.append(1)
        raise Crash("killed after the call")

    return wrapper


def crash_before(*args: Any, **kwargs: Any) -> Any:
    raise Crash("killed before the call")


def one_payee(balance: int = 5_000) -> Any:
    return make_payee("restaurant", balance=balance)


def assert_paid_once(emulator: EmulatorServer, payee: Any, amount: int) -> Payout:
    payout = Payout.objects.get(payee_address=payee.ledger_address)
    assert payout.state == "paid", payout
    assert emulator.transfer_counts() == {str(payout.pk): 1}
    assert payout.amount == amount
    assert bal(payee.ledger_address) == 0
    assert Transaction.objects.filter(reference=f"payout-settle:{payout.pk}").count() == 1
    assert_books([payee])
    return payout


def test_w1_enqueue_lost_after_commit(emulator: EmulatorServer, monkeypatch: Any) -> None:
    # given: the scheduling commit happens, the message to the workers is lost
    payee = one_payee()
    monkeypatch.setattr(driving, "payouts_enqueue", lambda ids: 0)
    payouts_schedule(payee_ids=[key(payee)])
    assert Payout.objects.get().state == "reserved"
    # when: not yet stuck long enough, the sweeper leaves it; later it re-drives it
    monkeypatch.undo()
    assert payouts_sweep() == 0
    expire_leases()
    assert payouts_sweep() == 1  # eager Celery: the driving task runs inline
    # then
    assert_paid_once(emulator, payee, 5_000)


def test_crash_inside_the_scheduling_transaction(
    emulator: EmulatorServer, monkeypatch: Any
) -> None:
    payee = one_payee()
    monkeypatch.setattr(scheduling, "flows_post", crash_after(scheduling.flows_post))
    with pytest.raises(Crash):
        payouts_schedule(payee_ids=[key(payee)])
    # then: nothing committed: no payout, no ledger transaction, the balance intact
    assert not Payout.objects.exists()
    assert not Transaction.objects.filter(reference__startswith="payout-").exists()
    assert bal(payee.ledger_address) == 5_000
    monkeypatch.undo()
    payouts_schedule(payee_ids=[key(payee)])
    assert_paid_once(emulator, payee, 5_000)


def test_w2_killed_after_the_key_was_stored_before_the_request(
    emulator: EmulatorServer, monkeypatch: Any
) -> None:
    payee = one_payee()
    monkeypatch.setattr(driving, "transfer_create", crash_before)
    with pytest.raises(Crash):
        payouts_schedule(payee_ids=[key(payee)])
    payout = Payout.objects.get()
    assert payout.state == "submitting" and payout.idempotency_key == f"transfer:{payout.pk}"
    assert payout.lease_token  # the dead worker's lease is still there
    assert emulator.transfer_counts() == {}
    monkeypatch.undo()
    # when: another worker tries at once, the live lease keeps it out
    result = payouts_drive(ids=[payout.pk], actor="other")
    assert result.claimed == 0
    # and once the lease expired, the sweeper's drive looks up (nothing), then the same key
    expire_leases()
    payouts_drive(ids=[payout.pk], actor="sweeper")
    paid = assert_paid_once(emulator, payee, 5_000)
    assert paid.attempts == 2


def test_w3_killed_while_stripe_creates_the_transfer(
    emulator: EmulatorServer, monkeypatch: Any
) -> None:
    payee = one_payee()
    calls: list[int] = []
    monkeypatch.setattr(
        StripeGateway, "transfer_create", crash_after(StripeGateway.transfer_create, calls)
    )
    with pytest.raises(Crash):
        payouts_schedule(payee_ids=[key(payee)])
    payout = Payout.objects.get()
    assert payout.state == "submitting" and calls == [1]
    assert emulator.transfer_counts() == {str(payout.pk): 1}  # Stripe did it
    monkeypatch.undo()
    replays_before = emulator.api.stats["idempotent_replays"]
    # when
    expire_leases()
    payouts_drive(ids=[payout.pk], actor="sweeper")
    # then: found by the lookup, adopted; no second create call at all
    paid = assert_paid_once(emulator, payee, 5_000)
    assert paid.attempts == 1
    assert emulator.api.stats["idempotent_replays"] == replays_before


def test_w4_killed_after_the_response_before_recording_it(
    emulator: EmulatorServer, monkeypatch: Any
) -> None:
    payee = one_payee()
    monkeypatch.setattr(driving, "_record", crash_before)
    with pytest.raises(Crash):
        payouts_schedule(payee_ids=[key(payee)])
    payout = Payout.objects.get()
    assert payout.state == "submitting" and payout.transfer_id is None
    monkeypatch.undo()
    expire_leases()
    payouts_drive(ids=[payout.pk], actor="sweeper")
    assert_paid_once(emulator, payee, 5_000)


def test_killed_after_recording_the_transfer_before_settling(
    emulator: EmulatorServer, monkeypatch: Any
) -> None:
    payee = one_payee()
    monkeypatch.setattr(driving, "step_settle", crash_before)
    with pytest.raises(Crash):
        payouts_schedule(payee_ids=[key(payee)])
    assert Payout.objects.get().state == "submitted"
    monkeypatch.undo()
    expire_leases()
    assert payouts_sweep() == 1
    assert_paid_once(emulator, payee, 5_000)


def test_killed_inside_the_settle_transaction(emulator: EmulatorServer, monkeypatch: Any) -> None:
    payee = one_payee()
    monkeypatch.setattr(returns, "settle_post", crash_after(returns.settle_post))
    with pytest.raises(Crash):
        payouts_schedule(payee_ids=[key(payee)])
    payout = Payout.objects.get()
    # the settle posting rolled back with the state change
    assert payout.state == "submitted"
    assert not Transaction.objects.filter(reference=f"payout-settle:{payout.pk}").exists()
    monkeypatch.undo()
    drive_until_done()
    assert_paid_once(emulator, payee, 5_000)


def test_killed_inside_the_return_of_a_refused_transfer(
    emulator: EmulatorServer, monkeypatch: Any
) -> None:
    # given: Stripe refuses the transfer (the destination does not exist)
    payee = one_payee()
    type(payee).objects.filter(pk=payee.pk).update(stripe_account_id="acct_doesnotexist")
    monkeypatch.setattr(returns, "give_back", crash_after(returns.give_back))
    with pytest.raises(Crash):
        payouts_schedule(payee_ids=[key(payee)])
    payout = Payout.objects.get()
    assert payout.state == "failed" and "No such destination" in payout.last_error
    assert bal(payee.ledger_address) == 0  # still in the payout account
    monkeypatch.undo()
    drive_until_done()
    payout.refresh_from_db()
    assert payout.state == "returned"
    assert emulator.transfer_counts() == {}
    assert bal(payee.ledger_address) == 5_000 and bal(payout.account) == 0
    assert_books([payee])


def test_w7_lease_taken_over_while_the_first_worker_is_in_the_stripe_call(
    emulator: EmulatorServer, monkeypatch: Any
) -> None:
    # given: worker A's Stripe call is so slow that its lease expires and worker B takes over
    payee = one_payee()
    real = StripeGateway.transfer_create
    seen: list[str] = []

    def slow_call(self: StripeGateway, **kwargs: Any) -> Any:
        result = real(self, **kwargs)
        if not seen:
            seen.append(kwargs["idempotency_key"])
            expire_leases()
            other = payouts_drive(ids=list(Payout.objects.values_list("id", flat=True)), actor="B")
            assert other.claimed == 1 and len(other.paid) == 1
        return result

    monkeypatch.setattr(StripeGateway, "transfer_create", slow_call)
    # when: A carries on with its (stale) answer
    result = payouts_schedule(payee_ids=[key(payee)], actor="A")
    # then: A's writes were fenced off; B recorded and settled once
    payout = assert_paid_once(emulator, payee, 5_000)
    assert len(result.created) == 1
    recorded_by = PayoutEvent.objects.get(payout=payout, to_state="submitted").actor
    assert recorded_by == "B"
    assert PayoutEvent.objects.filter(payout=payout, to_state="paid").count() == 1
