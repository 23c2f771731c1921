"""Stripe 500s, timeouts and refusals on transfer creation (the emulator's chaos switches):
never a duplicate transfer, never a lost payout."""

from __future__ import annotations

import time
from typing import Any

import pytest

from payouts.models import PayeeHoldChange, Payout
from payouts.services import payouts_drive, payouts_schedule
from payouts.transitions import IN_FLIGHT
from stripe_emulator import ChaosConfig, EmulatorServer
from tests.payouts.helpers import assert_books, bal, expire_leases, key, make_payee

pytestmark = pytest.mark.django_db

N = 24


def settle_everything(emulator: EmulatorServer, *, rounds: int = 40, pause: float = 0.0) -> int:
    """The sweeper over time, until every payout is terminal. Returns the rounds used."""
    for used in range(1, rounds + 1):
        ids = list(
            Payout.objects.filter(state__in=[str(s) for s in IN_FLIGHT]).values_list(
                "id", flat=True
            )
        )
        if not ids:
            return used
        if pause:
            time.sleep(pause)
        expire_leases()
        payouts_drive(ids=ids, actor="sweeper")
    raise AssertionError(
        f"still in flight after {rounds} rounds: "
        f"{list(Payout.objects.exclude(state__in=['paid', 'returned']).values('state', 'last_error'))}"
    )


def run_with_chaos(
    emulator: EmulatorServer,
    pause: float = 0.0,
    timeout: float | None = None,
    settings: Any = None,
    **chaos: Any,
) -> list[Any]:
    payees = [make_payee("restaurant", balance=1_000 + i) for i in range(N)]
    if timeout is not None:
        settings.STRIPE_TIMEOUT = timeout  # shorter than the emulator's chaos sleep
    emulator.set_chaos(ChaosConfig(seed=3, **chaos))
    payouts_schedule(payee_ids=[key(p) for p in payees])
    settle_everything(emulator, pause=pause)
    emulator.set_chaos(ChaosConfig())
    # then: all paid, exactly one transfer each, the books add up
    payouts = list(Payout.objects.all())
    assert len(payouts) == N
    assert {p.state for p in payouts} == {"paid"}
    assert emulator.transfer_counts() == {str(p.pk): 1 for p in payouts}
    assert emulator.state.counts()["transfer"] == N
    for payee in payees:
        assert bal(payee.ledger_address) == 0
    assert_books(payees)
    return payouts


TRANSFER_POSTS = {"api_paths": ("/v1/transfers",), "api_methods": ("POST",)}


def test_500_before_anything_is_done(emulator: EmulatorServer) -> None:
    payouts = run_with_chaos(emulator, api_error_rate=0.5, **TRANSFER_POSTS)
    assert emulator.api.stats["chaos_errors_before"] > 0
    assert max(p.attempts for p in payouts) >= 2  # retried with the same key


def test_500_after_the_transfer_was_made(emulator: EmulatorServer) -> None:
    # Stripe saved the 500 under the key: a same-key retry would only replay it; the lookup
    # is what finds the transfer.
    run_with_chaos(emulator, api_error_after_rate=0.5, **TRANSFER_POSTS)
    assert emulator.api.stats["chaos_errors_after"] > 0


def test_timeouts_the_transfer_happens_after_the_client_gave_up(
    emulator: EmulatorServer, settings: Any
) -> None:
    run_with_chaos(
        emulator,
        pause=0.35,
        timeout=0.3,
        settings=settings,
        api_timeout_rate=0.4,
        api_timeout_seconds=0.6,
        **TRANSFER_POSTS,
    )
    assert emulator.api.stats["chaos_timeouts"] > 0


def test_everything_at_once_lookups_included(emulator: EmulatorServer, settings: Any) -> None:
    run_with_chaos(
        emulator,
        pause=0.35,
        timeout=0.3,
        settings=settings,
        api_error_rate=0.15,
        api_error_after_rate=0.15,
        api_timeout_rate=0.15,
        api_timeout_seconds=0.5,
        api_paths=("/v1/transfers",),
    )


def test_an_unknown_outcome_stays_submitting_and_backs_off(emulator: EmulatorServer) -> None:
    payee = make_payee("restaurant", balance=1_000)
    emulator.set_chaos(ChaosConfig(api_error_rate=1.0, api_paths=("/v1/transfers",)))
    payouts_schedule(payee_ids=[key(payee)])
    payout = Payout.objects.get()
    assert payout.state == "submitting"
    assert "provider_outcome_unknown" in payout.last_error
    assert payout.next_attempt_at is not None and payout.lease_token == ""
    assert emulator.transfer_counts() == {}
    emulator.set_chaos(ChaosConfig())
    settle_everything(emulator)
    assert emulator.transfer_counts() == {str(payout.pk): 1}


def test_escalation_after_a_long_unknown(emulator: EmulatorServer, settings: Any) -> None:
    settings.PAYOUTS_ESCALATE_SECONDS = 0
    payee = make_payee("restaurant", balance=1_000)
    emulator.set_chaos(ChaosConfig(api_error_rate=1.0, api_paths=("/v1/transfers",)))
    payouts_schedule(payee_ids=[key(payee)])
    assert Payout.objects.get().needs_attention


def test_platform_balance_too_low_fails_and_returns_without_holding(
    emulator: EmulatorServer,
) -> None:
    # given: more owed than the platform has available at Stripe
    payee = make_payee("restaurant", balance=60_000_000)
    # when
    payouts_schedule(payee_ids=[key(payee)])
    # then: refused, money back on the payee, not held (the platform's problem)
    payout = Payout.objects.get()
    assert payout.state == "returned"
    assert "balance_insufficient" in payout.last_error
    assert bal(payee.ledger_address) == 60_000_000
    assert emulator.transfer_counts() == {}
    assert not PayeeHoldChange.objects.exists()
    trail = list(payout.events.values_list("to_state", flat=True))
    assert trail == ["pending", "reserved", "submitting", "failed", "returned"]
    assert_books([payee])


def test_a_refused_destination_fails_returns_and_holds_the_payee(emulator: EmulatorServer) -> None:
    payee = make_payee("rider", balance=900)
    type(payee).objects.filter(pk=payee.pk).update(stripe_account_id="acct_gone")
    payouts_schedule(payee_ids=[key(payee)])
    payout = Payout.objects.get()
    assert payout.state == "returned"
    assert bal(payee.ledger_address) == 900
    payee.refresh_from_db()
    assert payee.payouts_on_hold
    hold = PayeeHoldChange.objects.get()
    assert hold.on_hold and "refused by Stripe" in hold.reason
    # and the next pass skips it until staff release it
    assert payouts_schedule(payee_ids=[key(payee)]).created == []
