"""The leased claim and its sweeper (`common.leases`), on two real tables: refunds (a random
token per claim, database time) and the Stripe inbox (a counter token, the caller's clock)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from django.db.models import F, Q
from django.utils import timezone

from common.leases import LeaseColumns, Sweeper, lease_claim
from marketplace.models import Refund
from stripe_gateway.models import StripeEvent
from tests.marketplace.factories import OrderFactory

COUNTER = LeaseColumns(until="next_attempt_at", owner="attempts", counter=True)


@pytest.fixture
def refunds(db: Any) -> list[Refund]:
    order = OrderFactory()
    return [
        Refund.objects.create(order=order, amount=100 + i, source=Refund.Source.ORDER)
        for i in range(3)
    ]


def _expire(*rows: Refund) -> None:
    Refund.objects.filter(pk__in=[r.pk for r in rows]).update(
        lease_until=timezone.now() - timedelta(seconds=1)
    )


def test_a_claim_takes_the_free_rows_and_a_second_claim_gets_none(refunds: list[Refund]) -> None:
    # when
    first = lease_claim(Refund.objects.all(), seconds=60)
    second = lease_claim(Refund.objects.all(), seconds=60)
    # then: one token on every row, an expiry a minute out (database time)
    assert sorted(first.ids) == sorted(r.pk for r in refunds)
    assert second.ids == [] and second.rows == []
    stored = list(Refund.objects.values_list("lease_token", "lease_until"))
    assert {token for token, _ in stored} == {first.token}
    now = timezone.now()
    assert all(
        now + timedelta(seconds=50) < until < now + timedelta(seconds=70) for _, until in stored
    )
    assert [r.lease_token for r in first.rows] == [first.token] * 3


def test_only_the_rows_asked_for_and_free_are_claimed(refunds: list[Refund]) -> None:
    # given: one row held by someone else
    other = lease_claim(Refund.objects.filter(pk=refunds[0].pk), seconds=60)
    # when
    lease = lease_claim(Refund.objects.filter(pk__in=[r.pk for r in refunds[:2]]), seconds=60)
    # then
    assert other.ids == [refunds[0].pk]
    assert lease.ids == [refunds[1].pk]


def test_an_expired_lease_is_taken_over_and_fences_out_its_old_holder(
    refunds: list[Refund],
) -> None:
    # given: a worker's lease expired (it died, or is stuck in a slow call)
    old = lease_claim(Refund.objects.filter(pk=refunds[0].pk), seconds=60)
    _expire(refunds[0])
    # when: another claims the row
    new = lease_claim(Refund.objects.filter(pk=refunds[0].pk), seconds=60)
    # then: the new holder has it; the old one's fence, renewal and release touch nothing
    assert new.ids == [refunds[0].pk] and new.token != old.token
    assert old.held().count() == 0
    assert old.heartbeat(force=True) == 0
    assert old.release(reason="old") == 0
    assert new.held().count() == 1
    row = Refund.objects.get(pk=refunds[0].pk)
    assert (row.lease_token, row.reason) == (new.token, "")


def test_heartbeat_pushes_the_expiry_out_once_a_third_is_used(refunds: list[Refund]) -> None:
    # given
    lease = lease_claim(Refund.objects.all(), seconds=60)
    Refund.objects.update(lease_until=timezone.now() + timedelta(seconds=5))
    # when: just claimed, a heartbeat writes nothing
    assert lease.heartbeat() == 0
    # when: a third of the lease is used
    lease.renewed_at -= 21
    renewed = lease.heartbeat()
    # then
    assert renewed == 3
    untils = Refund.objects.values_list("lease_until", flat=True)
    assert all(until > timezone.now() + timedelta(seconds=50) for until in untils)


def test_release_clears_the_lease_with_the_changes_except_what_is_excluded(
    refunds: list[Refund],
) -> None:
    # given
    lease = lease_claim(Refund.objects.all(), seconds=60)
    # when: released, writing a change with it, all but the refund of 102
    released = lease.release(exclude=Q(amount__gte=102), reason="done")
    # then
    assert released == 2
    rows = [Refund.objects.get(pk=r.pk) for r in refunds]
    assert [(r.lease_token, r.lease_until is None, r.reason) for r in rows] == [
        ("", True, "done"),
        ("", True, "done"),
        (lease.token, False, ""),
    ]


def _event(n: int, **fields: Any) -> StripeEvent:
    return StripeEvent.objects.create(
        stripe_id=f"evt_lease_{n}",
        type="test.event",
        created=datetime(2026, 1, 1, tzinfo=UTC),
        payload={"id": f"evt_lease_{n}", "data": {"object": {}}},
        **fields,
    )


@pytest.mark.django_db
def test_a_counter_token_is_incremented_by_each_claim_and_fences_by_its_value() -> None:
    # given: an event claimed twice before (attempts 2), its last lease expired
    now = timezone.now()
    event = _event(1, status="processing", attempts=2, next_attempt_at=now - timedelta(seconds=1))
    # when: claimed with the caller's clock, writing the state with the lease
    lease = lease_claim(
        StripeEvent.objects.filter(pk=event.pk),
        seconds=30,
        columns=COUNTER,
        now=now,
        skip_locked=True,
        changes={"status": "processing", "last_error": "claimed"},
    )
    # then: the token is the new count, the expiry is the caller's now + 30 s, on the row
    # returned as on the one stored
    (row,) = lease.rows
    assert (lease.token, row.attempts, row.next_attempt_at, row.last_error) == (
        3,
        3,
        now + timedelta(seconds=30),
        "claimed",
    )
    stored = StripeEvent.objects.get(pk=event.pk)
    assert (stored.attempts, stored.next_attempt_at) == (3, now + timedelta(seconds=30))
    # and: a claim by another worker in between moves the counter on: our fence is gone
    StripeEvent.objects.filter(pk=event.pk).update(attempts=F("attempts") + 1)
    assert lease.held().count() == 0
    # and: a counter token is never cleared by a release
    assert lease.release() == 0


@pytest.mark.django_db
def test_free_and_expired_compare_the_expiry_with_the_clock_given() -> None:
    # given
    now = timezone.now()
    free = _event(1, next_attempt_at=None)
    expired = _event(2, next_attempt_at=now - timedelta(seconds=1))
    live = _event(3, next_attempt_at=now + timedelta(seconds=60))
    # when
    found_free = set(StripeEvent.objects.filter(COUNTER.free(now)).values_list("pk", flat=True))
    found_expired = set(
        StripeEvent.objects.filter(COUNTER.expired(now)).values_list("pk", flat=True)
    )
    # then
    assert found_free == {free.pk, expired.pk}
    assert found_expired == {expired.pk}
    assert live.pk not in found_free


def test_the_sweeper_requeues_what_is_due_up_to_its_batch() -> None:
    # given
    asked: list[tuple[Any, int]] = []
    requeued: list[list[int]] = []

    def due(now: Any, limit: int) -> list[int]:
        asked.append((now, limit))
        return list(range(7))[:limit]

    sweeper = Sweeper(
        name="test", due=due, requeue=lambda keys: requeued.append(list(keys)), batch=lambda: 5
    )
    # when
    count = sweeper()
    count_limited = sweeper(limit=2, now="a clock")  # type: ignore[arg-type]
    # then
    assert (count, count_limited) == (5, 2)
    assert asked == [(None, 5), ("a clock", 2)]
    assert requeued == [[0, 1, 2, 3, 4], [0, 1]]


def test_the_sweeper_requeues_nothing_when_nothing_is_due() -> None:
    requeued: list[Any] = []
    sweeper = Sweeper(
        name="test", due=lambda now, limit: [], requeue=requeued.append, batch=lambda: 5
    )
    assert sweeper() == 0
    assert requeued == []
