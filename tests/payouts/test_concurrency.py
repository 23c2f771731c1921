"""Several workers at once on PostgreSQL (threads, real transactions): two schedulers never
create two payouts for one payee; two drivers never pay one payout twice."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable
from typing import Any

import pytest
from django.db import connection

from payouts.models import Payout, PayoutEvent
from payouts.services import payouts_drive, payouts_schedule
from stripe_emulator import EmulatorServer
from tests.payouts.conftest import TRANSACTIONAL_APPS
from tests.payouts.helpers import bal, key, make_payee

pytestmark = pytest.mark.django_db(transaction=True, available_apps=TRANSACTIONAL_APPS)


def run_concurrently(n: int, fn: Callable[[int], Any]) -> list[Any]:
    """fn(i) in n threads released together; each closes its own connection."""
    barrier = threading.Barrier(n)
    results: list[Any] = [None] * n

    def worker(i: int) -> None:
        try:
            barrier.wait(timeout=30)
            results[i] = fn(i)
        except BaseException as exc:  # surfaced by the assertions
            results[i] = exc
        finally:
            connection.close()

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(n)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    return results


@pytest.mark.parametrize("chunk_size", [1, 7, 200])
def test_two_schedulers_at_once_make_one_payout_per_payee(
    emulator: EmulatorServer, chunk_size: int
) -> None:
    # given
    payees = [make_payee("restaurant" if i % 2 else "rider", balance=1_000 + i) for i in range(30)]
    ids = [key(p) for p in payees]
    # when: two scheduling passes (two workers) at the same instant
    results = run_concurrently(
        2,
        lambda i: payouts_schedule(
            payee_ids=ids, chunk_size=chunk_size, drive=False, actor=f"scheduler-{i}"
        ),
    )
    # then
    assert not [r for r in results if isinstance(r, BaseException)], results
    assert sum(len(r.created) for r in results) == 30
    per_payee = Counter(Payout.objects.values_list("payee_kind", "payee_id"))
    assert set(per_payee.values()) == {1} and len(per_payee) == 30
    for payee in payees:
        assert bal(payee.ledger_address) == 0
    assert set(Payout.objects.values_list("seq", flat=True)) == {1}


def test_four_schedulers_and_then_two_drivers(emulator: EmulatorServer) -> None:
    payees = [make_payee("restaurant", balance=2_000) for _ in range(12)]
    ids = [key(p) for p in payees]
    run_concurrently(4, lambda i: payouts_schedule(payee_ids=ids, chunk_size=3, drive=False))
    assert Payout.objects.count() == 12
    payout_ids = list(Payout.objects.values_list("id", flat=True))
    # when: two drivers get the same batch (a redelivered message)
    results = run_concurrently(2, lambda i: payouts_drive(ids=payout_ids, actor=f"driver-{i}"))
    # then: every payout claimed by exactly one of them, and paid once
    assert not [r for r in results if isinstance(r, BaseException)], results
    assert sum(r.claimed for r in results) == 12
    assert sum(len(r.paid) for r in results) == 12
    assert set(Payout.objects.values_list("state", flat=True)) == {"paid"}
    assert emulator.transfer_counts() == {str(i): 1 for i in payout_ids}
    assert PayoutEvent.objects.filter(to_state="paid").count() == 12
