"""Property: whatever happens (earnings, refunds borne by the payee, passes, crashes at any
step, Stripe 500s, reversals), the books add up after every step, no payout ever has two
transfers, and once the sweeper has run every payout is terminal, and each payee's balance is
exactly what it earned less what it bore less what was paid out and not reversed."""

from __future__ import annotations

import contextlib
from typing import Any
from unittest import mock

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ledger.selectors import balances_get
from payouts.models import Payout
from payouts.services import driving, payouts_drive, payouts_schedule
from payouts.transitions import IN_FLIGHT
from stripe_emulator import ChaosConfig, EmulatorServer
from stripe_gateway.client import StripeGateway
from tests.payouts.conftest import API_KEY
from tests.payouts.helpers import Crash, bal, credit, debit, drive_until_done, key, make_payee

pytestmark = pytest.mark.django_db

STEP = st.tuples(
    st.sampled_from(
        [
            "credit",
            "debit",
            "schedule",
            "drive",
            "crash_before_call",
            "crash_after_call",
            "crash_before_record",
            "stripe_500",
            "reverse",
        ]
    ),
    st.integers(min_value=0, max_value=2),
    st.integers(min_value=1, max_value=5_000),
)


def _crash_after(real: Any) -> Any:
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        real(*args, **kwargs)
        raise Crash("killed after the call")

    return wrapper


def _raise_crash(*args: Any, **kwargs: Any) -> Any:
    raise Crash("killed")


def _in_flight(payees: list[Any]) -> list[Any]:
    return list(
        Payout.objects.filter(
            payee_address__in=[p.ledger_address for p in payees],
            state__in=[str(s) for s in IN_FLIGHT],
        ).values_list("id", flat=True)
    )


def _check(emulator: EmulatorServer, payees: list[Any]) -> None:
    assert all(v == 0 for v in balances_get(pattern="**").totals.values())
    counts = emulator.transfer_counts()
    assert all(n == 1 for n in counts.values()), counts


@settings(
    max_examples=30,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(steps=st.lists(STEP, min_size=2, max_size=10))
def test_books_and_transfers_stay_right(
    emulator: EmulatorServer, steps: list[tuple[str, int, int]]
) -> None:
    payees = [make_payee("restaurant" if i else "rider") for i in range(3)]
    earned = dict.fromkeys(range(3), 0)
    borne = dict.fromkeys(range(3), 0)
    ids = [key(p) for p in payees]
    for action, who, amount in steps:
        payee = payees[who]
        if action == "credit":
            credit(payee.ledger_address, amount)
            earned[who] += amount
        elif action == "debit":
            debit(payee.ledger_address, amount)
            borne[who] += amount
        elif action == "schedule":
            payouts_schedule(payee_ids=ids)
        elif action == "drive":
            drive_until_done()
        elif action == "stripe_500":
            emulator.set_chaos(ChaosConfig(api_error_rate=1.0, api_paths=("/v1/transfers",)))
            payouts_schedule(payee_ids=ids)
            emulator.set_chaos(ChaosConfig())
        elif action == "reverse":
            paid = Payout.objects.filter(payee_address=payee.ledger_address, state="paid").first()
            if paid is not None and paid.amount_reversed == 0:
                emulator.request(
                    "POST", f"/v1/transfers/{paid.transfer_id}/reversals", {}, api_key=API_KEY
                )
                from payouts.services.events import transfer_reversed_apply

                _status, transfer = emulator.request(
                    "GET", f"/v1/transfers/{paid.transfer_id}", api_key=API_KEY
                )
                from django.db import transaction

                with transaction.atomic():
                    transfer_reversed_apply(transfer, actor="test")
        else:
            target: Any
            if action == "crash_before_call":
                target = mock.patch.object(driving, "transfer_create", _raise_crash)
            elif action == "crash_after_call":
                target = mock.patch.object(
                    StripeGateway, "transfer_create", _crash_after(StripeGateway.transfer_create)
                )
            else:
                target = mock.patch.object(driving, "_record", _raise_crash)
            with target, contextlib.suppress(Crash):
                payouts_schedule(payee_ids=ids)
        _check(emulator, payees)
    # the sweeper, over time
    drive_until_done()
    if _in_flight(payees):
        payouts_drive(ids=_in_flight(payees))
    assert _in_flight(payees) == []
    _check(emulator, payees)
    for i, payee in enumerate(payees):
        payouts = Payout.objects.filter(payee_address=payee.ledger_address)
        out = sum(p.amount - p.amount_reversed for p in payouts if p.state == "paid")
        assert bal(payee.ledger_address) == earned[i] - borne[i] - out
        for p in payouts:
            assert bal(p.account) == 0
            expected = 1 if p.transfer_id else 0
            assert emulator.transfer_counts().get(str(p.pk), 0) == expected
