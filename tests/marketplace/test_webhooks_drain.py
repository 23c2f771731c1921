"""Drains: new inbox rows coalesced into a few Celery tasks (`services.event_schedule`,
`services.events_drain`), the publish gate on the real Redis, and what a drain leaves alone."""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

import pytest
import redis
from django.conf import settings as django_settings
from django.utils import timezone

from stripe_gateway import services
from stripe_gateway.models import StripeEvent
from stripe_gateway.registry import DeferEvent
from stripe_gateway.tasks import stripe_events_drain
from tests.marketplace.helpers import make_event, stripe_object

pytestmark = pytest.mark.django_db
Status = StripeEvent.Status


@pytest.fixture(autouse=True)
def queue(settings: Any) -> str:
    """A queue of this test's own, so its gates (keyed by queue) are its own."""
    settings.STRIPE_EVENTS_QUEUE = f"test-drain-{uuid.uuid4().hex[:8]}"
    settings.STRIPE_EVENTS_DRAINS = 2
    return str(settings.STRIPE_EVENTS_QUEUE)


@pytest.fixture
def gates(queue: str) -> Any:
    client = redis.Redis.from_url(django_settings.CELERY_BROKER_URL)
    yield client
    client.delete(*(services.DRAIN_GATE.format(queue, slot) for slot in range(8)))


@pytest.fixture
def published(monkeypatch: pytest.MonkeyPatch) -> list[tuple[Any, ...]]:
    """What event_schedule / events_drain publish, as a worker would receive it (not eager)."""
    calls: list[tuple[Any, ...]] = []
    monkeypatch.setattr(services, "publishes_directly", lambda name: True)
    monkeypatch.setattr(services, "task_publish", lambda *args, **kw: calls.append(args))
    return calls


def store(event_type: str = "charge.succeeded") -> StripeEvent:
    event = make_event(event_type, stripe_object("charge"))
    assert services.event_ingest(payload=event, schedule=False).created
    return StripeEvent.objects.get(stripe_id=event["id"])


def gate_closed(gates: Any, queue: str, slot: int) -> bool:
    return bool(gates.exists(services.DRAIN_GATE.format(queue, slot)))


# --- scheduling ------------------------------------------------------------------------------
def test_a_burst_of_new_events_publishes_one_drain_per_slot(
    published: list[tuple[Any, ...]], gates: Any, queue: str
) -> None:
    # when: six events arrive while no drain has started
    for n in range(6):
        services.event_schedule(f"evt_burst_{n}")

    # then: one drain per slot, each slot's gate closed until its drain starts
    assert sorted(published) == [
        (services.DRAIN_TASK, queue, 0),
        (services.DRAIN_TASK, queue, 1),
    ]
    assert gate_closed(gates, queue, 0) and gate_closed(gates, queue, 1)


def test_a_started_drain_opens_its_gate_so_the_next_event_publishes_again(
    published: list[tuple[Any, ...]], gates: Any, queue: str, settings: Any
) -> None:
    # given: one slot, its drain published
    settings.STRIPE_EVENTS_DRAINS = 1
    services.event_schedule("evt_first")
    services.event_schedule("evt_second")
    assert published == [(services.DRAIN_TASK, queue, 0)]

    # when: the drain starts (nothing to claim), then an event arrives
    result = services.events_drain(slot=0)
    services.event_schedule("evt_third")

    # then
    assert (result.processed, result.handed_over) == (0, False)
    assert published == [(services.DRAIN_TASK, queue, 0)] * 2


def test_without_drains_each_event_has_its_own_task(
    published: list[tuple[Any, ...]], gates: Any, queue: str, settings: Any
) -> None:
    settings.STRIPE_EVENTS_DRAINS = 0

    services.event_schedule("evt_alone")

    assert [call[:3] for call in published] == [(services.PROCESS_TASK, queue, "evt_alone")]
    assert not gate_closed(gates, queue, 0)


def test_an_eager_app_runs_each_event_s_own_task(
    monkeypatch: pytest.MonkeyPatch, gates: Any, queue: str
) -> None:
    # given: tests and the demo run Celery eagerly: no drain, the event's task inline
    calls: list[tuple[Any, ...]] = []
    monkeypatch.setattr(services, "task_publish", lambda *args, **kw: calls.append(args))

    services.event_schedule("evt_eager")

    assert [call[:3] for call in calls] == [(services.PROCESS_TASK, queue, "evt_eager")]


def test_a_gate_redis_refuses_still_publishes_a_drain(
    published: list[tuple[Any, ...]], monkeypatch: pytest.MonkeyPatch, queue: str
) -> None:
    def refuse(key: str, ttl_ms: int) -> bool:
        raise redis.ConnectionError("gone")

    monkeypatch.setattr(services, "publish_gate_close", refuse)

    services.event_schedule("evt_no_gate")

    assert len(published) == 1 and published[0][0] == services.DRAIN_TASK


def test_a_drain_that_cannot_be_published_reopens_its_gate(
    monkeypatch: pytest.MonkeyPatch, gates: Any, queue: str, settings: Any
) -> None:
    # given: the broker refuses the message after the gate was closed
    settings.STRIPE_EVENTS_DRAINS = 1
    monkeypatch.setattr(services, "publishes_directly", lambda name: True)

    def refuse(*args: Any, **kwargs: Any) -> None:
        raise redis.ConnectionError("gone")

    monkeypatch.setattr(services, "task_publish", refuse)

    # when
    services.event_schedule("evt_lost")

    # then: the next event tries again instead of waiting for the gate to expire
    assert not gate_closed(gates, queue, 0)


# --- draining --------------------------------------------------------------------------------
def test_a_drain_processes_every_new_row_oldest_first_and_nothing_else(
    register_handler: Any, gates: Any, queue: str
) -> None:
    # given: three new rows, and rows a drain must leave alone
    ran: list[str] = []
    register_handler("charge.succeeded", lambda event: ran.append(event.stripe_id))
    new = [store() for _ in range(3)]
    later = timezone.now() + timedelta(minutes=5)
    untouched = {
        Status.PROCESSED: store(),
        Status.DEFERRED: store(),  # its retry is not due: its own task will run it
        Status.PROCESSING: store(),  # leased by another worker
        Status.FAILED: store(),
    }
    for status, row in untouched.items():
        due = None if status == Status.PROCESSED else later
        StripeEvent.objects.filter(pk=row.pk).update(status=status, next_attempt_at=due)
    services.publish_gate_close(services.DRAIN_GATE.format(queue, 1), 10_000)

    # when
    result = services.events_drain(slot=1)

    # then
    assert (result.processed, result.statuses, result.handed_over) == (
        3,
        {Status.PROCESSED: 3},
        False,
    )
    assert ran == [row.stripe_id for row in new]
    for status, row in untouched.items():
        row.refresh_from_db()
        assert (row.status, row.attempts) == (status, 0)
    assert not gate_closed(gates, queue, 1)


def test_a_full_drain_hands_over_to_the_next_drain_of_its_slot(
    register_handler: Any, published: list[tuple[Any, ...]], gates: Any, queue: str
) -> None:
    # given
    register_handler("charge.succeeded", lambda event: None)
    rows = [store() for _ in range(3)]

    # when: a drain with room for two
    first = services.events_drain(slot=0, limit=2)

    # then: the third waits for the next drain, published (gate closed) by this one
    assert (first.processed, first.handed_over) == (2, True)
    assert published == [(services.DRAIN_TASK, queue, 0)]
    assert gate_closed(gates, queue, 0)
    statuses = [StripeEvent.objects.get(pk=row.pk).status for row in rows]
    assert statuses == [Status.PROCESSED, Status.PROCESSED, Status.RECEIVED]

    # when: that drain runs
    second = services.events_drain(slot=0, limit=2)

    # then
    assert (second.processed, second.handed_over) == (1, False)
    assert StripeEvent.objects.get(pk=rows[2].pk).status == Status.PROCESSED


def test_a_deferred_row_gets_its_own_task_at_its_retry_time(
    register_handler: Any, monkeypatch: pytest.MonkeyPatch, gates: Any, queue: str
) -> None:
    # given: a handler that waits for another event
    def wait(event: StripeEvent) -> None:
        raise DeferEvent("the payment is not booked yet", retry_in=5.0)

    register_handler("charge.succeeded", wait)
    row = store()
    sent: list[tuple[tuple[Any, ...], dict[str, Any]]] = []
    monkeypatch.setattr(services, "task_send", lambda *a, **kw: sent.append((a, kw)))

    # when
    result = services.events_drain(slot=0)

    # then: what a single event's task does by retrying itself
    assert result.statuses == {Status.DEFERRED: 1}
    [(args, options)] = sent
    assert args == (services.PROCESS_TASK, row.stripe_id)
    assert options["queue"] == queue
    assert 5.0 <= options["countdown"] <= 6.5
    row.refresh_from_db()
    assert (row.status, row.attempts) == (Status.DEFERRED, 1)


def test_a_failing_handler_fails_its_row_and_the_drain_goes_on(
    register_handler: Any, monkeypatch: pytest.MonkeyPatch, gates: Any
) -> None:
    # given: the first of two rows fails
    calls: list[str] = []

    def handler(event: StripeEvent) -> None:
        calls.append(event.stripe_id)
        if len(calls) == 1:
            raise RuntimeError("boom")

    register_handler("charge.succeeded", handler)
    first, second = store(), store()
    monkeypatch.setattr(services, "task_send", lambda *a, **kw: None)

    # when
    result = services.events_drain(slot=0)

    # then
    assert result.statuses == {Status.FAILED: 1, Status.PROCESSED: 1}
    first.refresh_from_db()
    second.refresh_from_db()
    assert first.status == Status.FAILED and "boom" in first.last_error
    assert second.status == Status.PROCESSED


def test_the_drain_task_returns_how_many_rows_it_ran(register_handler: Any, gates: Any) -> None:
    register_handler("charge.succeeded", lambda event: None)
    store()
    store("unknown.type")

    assert stripe_events_drain(0) == 2
    assert set(StripeEvent.objects.values_list("status", flat=True)) == {
        Status.PROCESSED,
        Status.IGNORED,
    }


def test_a_drain_out_of_time_hands_over_after_its_first_claim(
    register_handler: Any,
    published: list[tuple[Any, ...]],
    gates: Any,
    queue: str,
    settings: Any,
) -> None:
    # given: no time left from the start (a slow Stripe, say): the first claim is run whole
    settings.STRIPE_EVENTS_DRAIN_SECONDS = 0.0
    register_handler("charge.succeeded", lambda event: None)
    rows = [store() for _ in range(services.DRAIN_CLAIM + 1)]

    # when
    result = services.events_drain(slot=1)

    # then
    assert (result.processed, result.handed_over) == (services.DRAIN_CLAIM, True)
    assert published == [(services.DRAIN_TASK, queue, 1)]
    statuses = [StripeEvent.objects.get(pk=row.pk).status for row in rows]
    assert statuses == [Status.PROCESSED] * services.DRAIN_CLAIM + [Status.RECEIVED]


class _Clock:
    """`services.time`, with `sleep` advancing `monotonic` instead of waiting (and a hook run
    on each pause: what other processes do while the drain waits)."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.pauses: list[float] = []
        self.on_sleep: Any = None

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.pauses.append(seconds)
        self.now += seconds
        if self.on_sleep is not None:
            self.on_sleep(len(self.pauses))


@pytest.fixture
def clock(gates: Any, monkeypatch: pytest.MonkeyPatch, settings: Any) -> _Clock:
    """The drain's clock, and a linger of 0.2 s (the default, stated)."""
    settings.STRIPE_EVENTS_DRAIN_LINGER = 0.2
    fake = _Clock()
    monkeypatch.setattr(services, "time", fake)
    return fake


def test_an_idle_drain_keeps_looking_for_the_linger_with_growing_pauses_then_ends(
    clock: _Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    # given: nothing to claim
    claims: list[int] = []
    claim_next = services._claim_next

    def counted(now: Any, count: int) -> list[StripeEvent]:
        claims.append(count)
        return claim_next(now, count)

    monkeypatch.setattr(services, "_claim_next", counted)

    # when
    result = services.events_drain(slot=0)

    # then: a claim after each pause, the pauses doubling up to the cap, within the linger
    assert (result.processed, result.handed_over) == (0, False)
    assert clock.pauses[:5] == [0.002, 0.004, 0.008, 0.016, services.LINGER_MAX_PAUSE]
    assert set(clock.pauses[4:]) == {services.LINGER_MAX_PAUSE}
    assert 0.2 - services.LINGER_MAX_PAUSE < sum(clock.pauses) <= 0.2
    assert len(claims) == len(clock.pauses) + 1 <= 12


def test_a_row_arriving_while_the_drain_lingers_is_run_by_that_drain(
    register_handler: Any, published: list[tuple[Any, ...]], clock: _Clock
) -> None:
    # given: a drain that finds one row; a second arrives during its third pause
    register_handler("charge.succeeded", lambda event: None)
    first = store()
    later: list[StripeEvent] = []
    clock.on_sleep = lambda n: later.append(store()) if n == 3 else None

    # when
    result = services.events_drain(slot=0)

    # then: both run by this drain, no other drain published; the linger started over after
    # the second row (its pauses from 2 ms again) and ended the drain
    assert (result.processed, result.handed_over) == (2, False)
    assert published == []
    assert StripeEvent.objects.get(pk=first.pk).status == Status.PROCESSED
    assert StripeEvent.objects.get(pk=later[0].pk).status == Status.PROCESSED
    assert clock.pauses[:4] == [0.002, 0.004, 0.008, 0.002]


def test_without_linger_a_drain_ends_at_its_first_empty_claim(clock: _Clock, settings: Any) -> None:
    settings.STRIPE_EVENTS_DRAIN_LINGER = 0.0

    result = services.events_drain(slot=0)

    assert (result.processed, result.handed_over, clock.pauses) == (0, False, [])


def test_a_drain_idle_at_its_deadline_ends_without_handing_over(
    register_handler: Any, published: list[tuple[Any, ...]], clock: _Clock, settings: Any
) -> None:
    # given: one row, then nothing, and the drain's time runs out while it lingers
    settings.STRIPE_EVENTS_DRAIN_SECONDS = 0.01
    register_handler("charge.succeeded", lambda event: None)
    store()

    result = services.events_drain(slot=0)

    # then: nothing was left to hand over (every row it answered for was claimable and
    # claimed), so no next drain is published
    assert (result.processed, result.handed_over) == (1, False)
    assert published == []
    assert sum(clock.pauses) < 0.01


def _plan_nodes(plan: dict[str, Any]) -> list[dict[str, Any]]:
    nodes = [plan]
    for child in plan.get("Plans", []):
        nodes.extend(_plan_nodes(child))
    return nodes


@pytest.mark.skipif(
    django_settings.DATABASES["default"]["ENGINE"] != "django.db.backends.postgresql",
    reason="the plan of PostgreSQL's claim",
)
def test_a_claim_reads_the_rows_it_takes_not_the_whole_backlog() -> None:
    # given: a backlog of 400 new events (after an outage, say), planner statistics fresh
    from django.db import connection

    base = timezone.now() - timedelta(hours=1)
    rows = []
    for n in range(400):
        payload = make_event("charge.succeeded", stripe_object("charge"))
        rows.append(
            StripeEvent(
                stripe_id=payload["id"],
                type=payload["type"],
                created=base,
                payload=payload,
                received_at=base + timedelta(milliseconds=n),
                next_attempt_at=base,
            )
        )
    StripeEvent.objects.bulk_create(rows)
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE marketplace_stripe_event")
    sql, _ = services._claim_next_sql("postgresql", False, services.DRAIN_CLAIM)
    params = [Status.PROCESSING, timezone.now()]

    # when: the drain's claim, explained as it runs
    with connection.cursor() as cursor:
        cursor.execute(f"EXPLAIN (ANALYZE, FORMAT JSON) {sql}", params)
        plan = cursor.fetchone()[0][0]["Plan"]

    # then: no sort of the backlog; the index scan stops at the rows it locks
    nodes = _plan_nodes(plan)
    assert not [n for n in nodes if n["Node Type"] in ("Sort", "Incremental Sort")]
    scans = [n for n in nodes if n.get("Index Name") == "stripe_event_status_idx"]
    assert len(scans) == 1
    assert scans[0]["Actual Rows"] == services.DRAIN_CLAIM
    # and it took the oldest
    claimed = StripeEvent.objects.filter(status=Status.PROCESSING).order_by("received_at")
    assert [row.stripe_id for row in claimed] == [row.stripe_id for row in rows[:4]]
