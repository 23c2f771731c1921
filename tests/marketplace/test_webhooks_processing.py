"""Processing of inbox rows: handlers, retries/backoff, deferral, leases, sweeper, replay, sync."""

from __future__ import annotations

from datetime import timedelta
from io import StringIO
from typing import Any

import pytest
import responses
from django.contrib.auth.models import Group
from django.core.exceptions import ImproperlyConfigured
from django.core.management import CommandError, call_command
from django.db.models import F
from django.utils import timezone

from stripe_gateway import services
from stripe_gateway.client import get_gateway
from stripe_gateway.management.commands.stripe_events import parse_since
from stripe_gateway.models import StripeEvent
from stripe_gateway.registry import (
    HANDLERS,
    DeferEvent,
    HandlerResult,
    handler_register,
)
from stripe_gateway.tasks import stripe_event_process, stripe_events_sweep
from tests.marketplace.conftest import API_BASE
from tests.marketplace.helpers import make_event, stripe_object

pytestmark = pytest.mark.django_db
Status = StripeEvent.Status


def store(
    event_type: str = "charge.succeeded", obj: dict | None = None, **kwargs: Any
) -> StripeEvent:
    event = make_event(event_type, obj or stripe_object("charge"), **kwargs)
    assert services.event_ingest(payload=event, schedule=False).created
    return StripeEvent.objects.get(stripe_id=event["id"])


def make_due(row: StripeEvent) -> None:
    StripeEvent.objects.filter(pk=row.pk).update(
        next_attempt_at=timezone.now() - timedelta(seconds=1)
    )


def effect(event: StripeEvent) -> None:
    """A ledger-like write keyed on the Stripe object: unique, so idempotent by get_or_create."""
    Group.objects.get_or_create(name=f"effect:{event.data_object['id']}")


# --- outcomes --------------------------------------------------------------------------------
def test_a_handler_runs_and_the_row_is_processed_with_its_write(register_handler: Any) -> None:
    # given
    register_handler("charge.succeeded", effect)
    row = store()

    # when
    outcome = services.event_process(event_id=row.stripe_id)

    # then
    row.refresh_from_db()
    assert (outcome.status, outcome.attempts) == (Status.PROCESSED, 1)
    assert (row.status, row.attempts, row.last_error) == (Status.PROCESSED, 1, "")
    assert row.processed_at is not None and row.next_attempt_at is None
    assert Group.objects.filter(name=f"effect:{row.data_object['id']}").count() == 1


def test_processing_a_processed_event_again_is_a_no_op(register_handler: Any) -> None:
    calls: list[str] = []
    register_handler("charge.succeeded", lambda event: calls.append(event.stripe_id))
    row = store()
    services.event_process(event_id=row.stripe_id)

    outcome = services.event_process(event_id=row.stripe_id)

    assert outcome.status == "skipped"
    assert calls == [row.stripe_id]


def test_a_handler_may_ignore_an_event(register_handler: Any) -> None:
    register_handler("charge.succeeded", lambda event: HandlerResult.ignored("not one of ours"))
    row = store()

    services.event_process(event_id=row.stripe_id)

    row.refresh_from_db()
    assert (row.status, row.last_error) == (Status.IGNORED, "not one of ours")


def test_an_unknown_type_is_ignored() -> None:
    row = store("customer.subscription.trial_will_end")
    assert "customer.subscription.trial_will_end" not in HANDLERS

    outcome = services.event_process(event_id=row.stripe_id)

    row.refresh_from_db()
    assert outcome.status == row.status == Status.IGNORED
    assert row.next_attempt_at is None


def test_an_event_of_the_other_mode_is_ignored(register_handler: Any) -> None:
    calls: list[str] = []
    register_handler("charge.succeeded", lambda event: calls.append(event.stripe_id))
    row = store(livemode=True)  # our key is sk_test_...

    services.event_process(event_id=row.stripe_id)

    row.refresh_from_db()
    assert row.status == Status.IGNORED
    assert "livemode" in row.last_error
    assert calls == []


def test_a_handler_returning_garbage_fails(register_handler: Any) -> None:
    register_handler("charge.succeeded", lambda event: "ok")
    row = store()
    services.event_process(event_id=row.stripe_id)
    row.refresh_from_db()
    assert row.status == Status.FAILED
    assert row.last_error.startswith("TypeError:")


# --- failures and backoff --------------------------------------------------------------------
def test_a_failing_handler_rolls_back_its_writes_and_backs_off_until_it_gives_up(
    register_handler: Any,
) -> None:
    # given: a handler that writes, then fails (max 3 attempts, backoff 10 s doubling)
    def write_then_fail(event: StripeEvent) -> None:
        effect(event)
        raise ValueError("no account for acct_x")

    register_handler("charge.succeeded", write_then_fail)
    row = store()

    # when: the first attempt
    started = timezone.now()
    first = services.event_process(event_id=row.stripe_id)

    # then: failed, nothing written, retry in ~10 s
    row.refresh_from_db()
    assert (row.status, row.attempts) == (Status.FAILED, 1)
    assert row.last_error == "ValueError: no account for acct_x"
    assert not Group.objects.filter(name__startswith="effect:").exists()
    assert first.retry_at == row.next_attempt_at
    assert timedelta(seconds=9) < row.next_attempt_at - started < timedelta(seconds=12)

    # when: too early for a retry
    assert services.event_process(event_id=row.stripe_id).status == "skipped"

    # when: the second attempt, once due: backoff doubles
    make_due(row)
    started = timezone.now()
    services.event_process(event_id=row.stripe_id)
    row.refresh_from_db()
    assert (row.status, row.attempts) == (Status.FAILED, 2)
    assert timedelta(seconds=19) < row.next_attempt_at - started < timedelta(seconds=22)

    # when: the last attempt
    make_due(row)
    last = services.event_process(event_id=row.stripe_id)

    # then: failed for good, nothing left for the sweeper
    row.refresh_from_db()
    assert (row.status, row.attempts, row.next_attempt_at) == (Status.FAILED, 3, None)
    assert row.last_error == "gave up after 3 attempts: ValueError: no account for acct_x"
    assert last.retry_at is None
    assert not Group.objects.filter(name__startswith="effect:").exists()
    assert row.stripe_id not in services.events_due(limit=10)


def test_backoff_is_capped(settings: Any) -> None:
    assert [services.backoff_seconds(n) for n in (1, 2, 3, 4, 5, 6)] == [10, 20, 40, 60, 60, 60]


def test_an_out_of_order_event_defers_then_succeeds_once_its_dependency_arrived(
    register_handler: Any,
) -> None:
    # given: the refund handler needs the payment to be booked first
    charge = stripe_object("charge")
    refund = stripe_object("refund") | {"charge": charge["id"]}

    def refund_handler(event: StripeEvent) -> None:
        charge_id = event.data_object["charge"]
        if not Group.objects.filter(name=f"effect:{charge_id}").exists():
            raise DeferEvent(f"payment {charge_id} not booked yet")
        Group.objects.create(name=f"refund:{event.data_object['id']}")

    register_handler("charge.succeeded", effect)
    register_handler("refund.created", refund_handler)
    refund_row = store("refund.created", refund)

    # when: the refund arrives first
    deferred = services.event_process(event_id=refund_row.stripe_id)

    # then: deferred with backoff, not failed
    refund_row.refresh_from_db()
    assert (refund_row.status, refund_row.attempts) == (Status.DEFERRED, 1)
    assert refund_row.last_error == f"deferred: payment {charge['id']} not booked yet"
    assert deferred.retry_at is not None

    # when: the payment arrives, and the sweeper runs once the refund is due
    payment_row = store("charge.succeeded", charge)
    services.event_process(event_id=payment_row.stripe_id)
    make_due(refund_row)
    assert stripe_events_sweep() == 1  # eager: processed inline

    # then
    refund_row.refresh_from_db()
    assert (refund_row.status, refund_row.attempts) == (Status.PROCESSED, 2)
    assert Group.objects.filter(name=f"refund:{refund['id']}").count() == 1


def test_defer_event_can_choose_its_delay(register_handler: Any) -> None:
    def later(event: StripeEvent) -> None:
        raise DeferEvent("wait", retry_in=600)

    register_handler("charge.succeeded", later)
    row = store()
    started = timezone.now()

    services.event_process(event_id=row.stripe_id)

    row.refresh_from_db()
    assert timedelta(seconds=599) < row.next_attempt_at - started < timedelta(seconds=602)


# --- two phases: fetch outside the transaction, write + mark inside ---------------------------
def test_prepare_fetches_outside_the_transaction_and_apply_writes_inside(
    register_handler: Any, mock_stripe: responses.RequestsMock
) -> None:
    # given: a charge re-fetched from Stripe (the event is only a hint)
    charge = stripe_object("charge") | {"amount_refunded": 100}
    mock_stripe.get(f"{API_BASE}/v1/charges/{charge['id']}", json=charge)
    seen: list[Any] = []

    def fetch(event: StripeEvent) -> dict:
        return get_gateway().charge_retrieve(event.data_object["id"])

    def apply(event: StripeEvent, fetched: dict) -> None:
        seen.append((event.status, fetched["amount_refunded"]))
        effect(event)

    register_handler("charge.refunded", apply, prepare=fetch)
    row = store("charge.refunded", stripe_object("charge"))

    # when
    services.event_process(event_id=row.stripe_id)

    # then: the autouse guard saw no Stripe call inside a transaction
    row.refresh_from_db()
    assert row.status == Status.PROCESSED
    assert seen == [(Status.PROCESSING, 100)]


def test_a_handler_calling_stripe_inside_the_transaction_is_caught(
    register_handler: Any, stripe_atomic_violations: list[str]
) -> None:
    def bad(event: StripeEvent) -> None:
        get_gateway().charge_retrieve(event.data_object["id"])

    register_handler("charge.refunded", bad)
    row = store("charge.refunded")

    services.event_process(event_id=row.stripe_id)

    row.refresh_from_db()
    assert row.status == Status.FAILED
    assert row.last_error.startswith("StripeCallInTransaction")
    assert stripe_atomic_violations == ["charge_retrieve inside 1 open atomic block(s)"]
    stripe_atomic_violations.clear()


def test_a_prepare_error_is_a_failure_with_backoff(
    register_handler: Any, mock_stripe: responses.RequestsMock
) -> None:
    mock_stripe.get(
        f"{API_BASE}/v1/charges/ch_1PgafuB7WZ01zgkWXYmPNZs8",
        status=500,
        json={"error": {"type": "api_error", "message": "down"}},
    )
    register_handler(
        "charge.refunded",
        lambda event, fetched: None,
        prepare=lambda event: get_gateway().charge_retrieve(event.data_object["id"]),
    )
    row = store("charge.refunded")

    services.event_process(event_id=row.stripe_id)

    row.refresh_from_db()
    assert row.status == Status.FAILED
    assert row.last_error.startswith("ProviderUnavailable:")
    assert row.next_attempt_at is not None


# --- leases ----------------------------------------------------------------------------------
def test_a_row_being_processed_is_not_claimed_again_until_its_lease_expires(
    register_handler: Any,
) -> None:
    register_handler("charge.succeeded", effect)
    row = store()
    # given: a worker claimed it and died
    StripeEvent.objects.filter(pk=row.pk).update(
        status=Status.PROCESSING, attempts=1, next_attempt_at=timezone.now() + timedelta(minutes=5)
    )
    assert services.event_process(event_id=row.stripe_id).status == "skipped"
    assert row.stripe_id not in services.events_due(limit=10)

    # when: the lease expires
    make_due(row)
    assert services.events_due(limit=10) == [row.stripe_id]
    outcome = services.event_process(event_id=row.stripe_id)

    # then
    assert (outcome.status, outcome.attempts) == (Status.PROCESSED, 2)


def test_a_worker_that_lost_its_lease_does_not_apply(register_handler: Any) -> None:
    # given: while this worker prepares, its lease expires and another worker claims the row
    calls: list[str] = []

    def stolen(event: StripeEvent) -> None:
        StripeEvent.objects.filter(pk=event.pk).update(attempts=F("attempts") + 1)

    register_handler("charge.succeeded", lambda event, _: calls.append("applied"), prepare=stolen)
    row = store()

    # when
    outcome = services.event_process(event_id=row.stripe_id)

    # then: nothing applied, the row left to its new owner
    assert outcome.status == "skipped"
    assert calls == []
    row.refresh_from_db()
    assert (row.status, row.attempts) == (Status.PROCESSING, 2)


# --- an outcome settled by prepare: one guarded UPDATE, no transaction ----------------------
def test_an_outcome_settled_by_prepare_marks_the_row_without_applying(
    register_handler: Any, django_assert_max_num_queries: Any
) -> None:
    # given: a prepare that finds there is nothing to write (the payment is booked already)
    calls: list[str] = []
    register_handler(
        "charge.succeeded",
        lambda event, prepared: calls.append("applied"),
        prepare=lambda event: HandlerResult.processed("booked"),
    )
    row = store()

    # when: claim, then the lease-guarded UPDATE alone (no BEGIN, lease lock, COMMIT)
    with django_assert_max_num_queries(2):
        outcome = services.event_process(event_id=row.stripe_id)

    # then
    assert (outcome.status, outcome.attempts, outcome.error) == (Status.PROCESSED, 1, "booked")
    assert calls == []
    row.refresh_from_db()
    assert (row.status, row.attempts, row.last_error) == (Status.PROCESSED, 1, "booked")
    assert row.processed_at is not None and row.next_attempt_at is None
    # and processing it again is a no-op
    assert services.event_process(event_id=row.stripe_id).status == "skipped"


def test_an_ignored_outcome_settled_by_prepare_is_ignored(register_handler: Any) -> None:
    register_handler(
        "charge.succeeded",
        lambda event, prepared: None,
        prepare=lambda event: HandlerResult.ignored("x" * 5000),
    )
    row = store()

    outcome = services.event_process(event_id=row.stripe_id)

    row.refresh_from_db()
    assert outcome.status == row.status == Status.IGNORED
    assert row.last_error == "x" * services.MAX_ERROR_LENGTH


def test_a_settled_outcome_is_not_recorded_by_a_worker_that_lost_its_lease(
    register_handler: Any,
) -> None:
    # given: while this worker prepares, its lease expires and another worker claims the row
    def stolen(event: StripeEvent) -> HandlerResult:
        StripeEvent.objects.filter(pk=event.pk).update(attempts=F("attempts") + 1)
        return HandlerResult.processed("booked")

    register_handler("charge.succeeded", lambda event, _: None, prepare=stolen)
    row = store()

    # when
    outcome = services.event_process(event_id=row.stripe_id)

    # then: nothing recorded, the row left to its new owner
    assert outcome.status == "skipped"
    row.refresh_from_db()
    assert (row.status, row.attempts, row.processed_at) == (Status.PROCESSING, 2, None)


# --- the sweeper -----------------------------------------------------------------------------
def test_the_sweeper_redrives_exactly_the_due_rows(monkeypatch: pytest.MonkeyPatch) -> None:
    # given
    now = timezone.now()
    rows = {
        name: store()
        for name in ["lost", "fresh", "retry_due", "retry_later", "stale", "done", "gave_up"]
    }
    updates = {
        "lost": {"next_attempt_at": now - timedelta(seconds=5)},
        "retry_due": {"status": Status.DEFERRED, "next_attempt_at": now - timedelta(seconds=1)},
        "retry_later": {"status": Status.FAILED, "next_attempt_at": now + timedelta(minutes=1)},
        "stale": {"status": Status.PROCESSING, "next_attempt_at": now - timedelta(seconds=1)},
        "done": {"status": Status.PROCESSED, "next_attempt_at": None},
        "gave_up": {"status": Status.FAILED, "next_attempt_at": None},
    }
    for name, fields in updates.items():
        StripeEvent.objects.filter(pk=rows[name].pk).update(**fields)
    scheduled: list[str] = []
    monkeypatch.setattr(services, "_publish_one", scheduled.append)

    # when
    count = services.events_sweep()

    # then
    expected = {rows[n].stripe_id for n in ("lost", "retry_due", "stale")}
    assert count == 3
    assert set(scheduled) == expected


def test_the_sweeper_is_in_the_beat_schedule(settings: Any) -> None:
    entry = settings.CELERY_BEAT_SCHEDULE["stripe-events-sweep"]
    assert entry == {"task": "marketplace.webhooks.tasks.stripe_events_sweep", "schedule": 30.0}
    assert stripe_events_sweep.name == entry["task"]


# --- the Celery task -------------------------------------------------------------------------
def test_the_task_processes_and_requeues_itself_for_the_next_attempt(
    register_handler: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # given: a failing handler, and a worker (not eager) context
    register_handler("charge.succeeded", lambda event: 1 / 0)
    row = store()
    retries: list[float] = []

    class Retry(Exception):
        pass

    def fake_retry(countdown: float, max_retries: Any) -> Exception:
        retries.append(countdown)
        return Retry()

    monkeypatch.setattr(stripe_event_process, "retry", fake_retry)
    stripe_event_process.push_request(is_eager=False)  # type: ignore[call-arg]
    try:
        # when / then
        with pytest.raises(Retry):
            stripe_event_process(row.stripe_id)
    finally:
        stripe_event_process.pop_request()
    assert len(retries) == 1 and 9 < retries[0] < 12


def test_the_task_in_eager_mode_leaves_retries_to_the_sweeper(register_handler: Any) -> None:
    register_handler("charge.succeeded", lambda event: 1 / 0)
    row = store()

    result = stripe_event_process.delay(row.stripe_id)

    assert result.get() == Status.FAILED


# --- the registry ----------------------------------------------------------------------------
def test_one_handler_per_type(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delitem(HANDLERS, "test.only", raising=False)

    @handler_register("test.only")
    def first(event: StripeEvent) -> None:
        pass

    handler_register("test.only")(first)  # the same function again: fine
    try:
        with pytest.raises(ImproperlyConfigured, match="already has a handler"):

            @handler_register("test.only")
            def second(event: StripeEvent) -> None:
                pass

        assert HANDLERS["test.only"].apply is first
    finally:
        HANDLERS.pop("test.only", None)


@pytest.mark.parametrize("bad", ["", " charge.succeeded", None])
def test_an_invalid_event_type_cannot_be_registered(bad: Any) -> None:
    with pytest.raises(ImproperlyConfigured):
        handler_register(bad)


# --- stripe_events replay / sync -------------------------------------------------------------
def test_replay_runs_a_failed_event_again(register_handler: Any) -> None:
    # given: an event that failed for good, and a fixed handler
    register_handler("charge.succeeded", lambda event: 1 / 0)
    row = store()
    StripeEvent.objects.filter(pk=row.pk).update(attempts=2)
    services.event_process(event_id=row.stripe_id)
    row.refresh_from_db()
    assert (row.status, row.next_attempt_at) == (Status.FAILED, None)
    register_handler("charge.succeeded", effect)
    out = StringIO()

    # when
    call_command("stripe_events", "replay", row.stripe_id, stdout=out)

    # then
    row.refresh_from_db()
    assert (row.status, row.attempts) == (Status.PROCESSED, 1)
    assert f"{row.stripe_id}: processed" in out.getvalue()


def test_replay_failed_replays_every_failed_event(register_handler: Any) -> None:
    register_handler("charge.succeeded", effect)
    failed = [store(), store()]
    ok = store()
    StripeEvent.objects.filter(pk__in=[r.pk for r in failed]).update(
        status=Status.FAILED, next_attempt_at=None
    )
    StripeEvent.objects.filter(pk=ok.pk).update(status=Status.PROCESSED, next_attempt_at=None)
    out = StringIO()

    call_command("stripe_events", "replay", "--failed", stdout=out)

    assert set(StripeEvent.objects.values_list("status", flat=True)) == {Status.PROCESSED}
    assert "replayed 2 event(s), 0 not processed" in out.getvalue()


def test_replay_of_an_event_missing_from_the_inbox_fetches_it(
    mock_stripe: responses.RequestsMock,
) -> None:
    event = make_event(
        "customer.subscription.trial_will_end", stripe_object("payout"), event_id="evt_missed_1"
    )
    mock_stripe.get(f"{API_BASE}/v1/events/evt_missed_1", json=event)

    call_command("stripe_events", "replay", "evt_missed_1", stdout=StringIO())

    row = StripeEvent.objects.get(stripe_id="evt_missed_1")
    assert row.status == Status.IGNORED
    assert row.payload == event


def test_replay_reports_problems_with_a_non_zero_exit(register_handler: Any) -> None:
    register_handler("charge.succeeded", lambda event: 1 / 0)
    row = store()
    err = StringIO()

    with pytest.raises(CommandError):
        call_command(
            "stripe_events",
            "replay",
            row.stripe_id,
            "evt_unknown",
            "--no-fetch",
            stdout=StringIO(),
            stderr=err,
        )
    assert "evt_unknown: event_not_found" in err.getvalue()
    with pytest.raises(CommandError):
        call_command("stripe_events", "replay", stdout=StringIO())
    with pytest.raises(CommandError):
        call_command("stripe_events", "replay", "ch_123", stdout=StringIO())


def test_replay_refuses_an_event_another_worker_holds() -> None:
    row = store()
    StripeEvent.objects.filter(pk=row.pk).update(
        status=Status.PROCESSING, next_attempt_at=timezone.now() + timedelta(minutes=5)
    )
    err = StringIO()
    with pytest.raises(CommandError):
        call_command("stripe_events", "replay", row.stripe_id, stdout=StringIO(), stderr=err)
    assert "event_busy" in err.getvalue()


def test_sync_stores_the_missing_events_and_leaves_the_others(
    mock_stripe: responses.RequestsMock,
) -> None:
    # given: Stripe has three events; we received one of them
    known = store("charge.succeeded")
    missing = [
        make_event("charge.refunded", stripe_object("charge")),
        make_event("payout.paid", stripe_object("payout")),
    ]
    page = {
        "object": "list",
        "data": [*missing, known.payload],
        "has_more": False,
        "url": "/v1/events",
    }
    mock_stripe.get(f"{API_BASE}/v1/events", json=page)
    out = StringIO()

    # when
    call_command(
        "stripe_events",
        "sync",
        "--since",
        "2d",
        "--type",
        "charge.refunded",
        "--type",
        "payout.paid",
        stdout=out,
    )

    # then
    assert "3 seen, 2 stored, 1 already in the inbox, 0 invalid" in out.getvalue()
    assert StripeEvent.objects.count() == 3
    assert StripeEvent.objects.get(stripe_id=missing[0]["id"]).payload == missing[0]
    request = mock_stripe.calls[0].request
    assert (
        "types%5B0%5D=charge.refunded" in request.url and "types%5B1%5D=payout.paid" in request.url
    )


def test_parse_since() -> None:
    now = timezone.now()
    assert parse_since("36h", now=now) == now - timedelta(hours=36)
    assert parse_since("3d", now=now) == now - timedelta(days=3)
    assert parse_since("1793000000").timestamp() == 1793000000
    assert parse_since("2026-11-01").isoformat() == "2026-11-01T00:00:00+00:00"
    assert parse_since("2026-11-01T12:30:00+02:00").isoformat() == "2026-11-01T12:30:00+02:00"
    for bad in ["yesterday", "2026-13-01", "-3d"]:
        with pytest.raises(CommandError):
            parse_since(bad)
