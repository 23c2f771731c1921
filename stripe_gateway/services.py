"""Services of the Stripe webhook inbox: ingest, process, sweep, replay, sync.

Ingest (`event_parse` + `event_ingest`) stores an event once by its Stripe id with a single
`INSERT ... ON CONFLICT DO NOTHING RETURNING id`, then schedules processing on commit; a
duplicate does nothing else. Processing (`event_process`) is described in the package doc.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import logging
import math
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import cache, partial
from typing import Any

from django.conf import settings
from django.db import DataError, connection, transaction
from django.utils import timezone

from common import rawsql
from common.backoff import backoff_delay
from common.leases import Sweeper
from common.prepared import prepared_statements
from config.celery import (
    publish_gate_close,
    publish_gate_open,
    publishes_directly,
    task_publish,
    task_send,
)
from config.errors import ApplicationError
from stripe_gateway import conf as gateway_conf
from stripe_gateway.models import StripeEvent
from stripe_gateway.registry import HANDLERS, DeferEvent, HandlerResult

logger = logging.getLogger(__name__)

# The Celery task that processes one row (`tasks.stripe_event_process`); its name predates
# this app and is kept so that queued messages still run.
PROCESS_TASK = "marketplace.webhooks.tasks.stripe_event_process"
# The Celery task that processes every new row it can claim (`tasks.stripe_events_drain`).
DRAIN_TASK = "stripe_gateway.tasks.stripe_events_drain"
# Redis key of the publish gate of drain slot N of a queue: closed while a drain of that slot is
# waiting to start.
DRAIN_GATE = "eats:stripe-events:{}:drain-gate:{}"

Status = StripeEvent.Status
MAX_JSON_DEPTH = 64
MAX_ERROR_LENGTH = 2000
# Bounds on `created`: from 2009 (Stripe's first year is later) to year 2100.
_CREATED_MIN, _CREATED_MAX = 1_230_768_000, 4_102_444_800


class InvalidEvent(ApplicationError):
    """The body is not a Stripe event we can store (bad JSON, wrong shape)."""

    code = "invalid_event"


class EventNotFound(ApplicationError):
    code = "event_not_found"
    http_status = 404


class EventBusy(ApplicationError):
    """The event is being processed right now (its lease has not expired)."""

    code = "event_busy"
    http_status = 409


# --- parse and validate ----------------------------------------------------------------------
def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"{text} is out of range")
    return value


def _depth_ok(value: Any, limit: int) -> bool:
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if depth > limit:
            return False
        if isinstance(item, dict):
            stack.extend((v, depth + 1) for v in item.values() if isinstance(v, dict | list))
        elif isinstance(item, list):
            stack.extend((v, depth + 1) for v in item if isinstance(v, dict | list))
    return True


def _text(payload: dict, key: str, *, max_length: int, required: bool) -> str:
    value = payload.get(key)
    if value is None and not required:
        return ""
    if not isinstance(value, str) or (required and not value):
        raise InvalidEvent(f"`{key}` must be a non-empty string", code="invalid_event")
    if len(value) > max_length or "\x00" in value:
        raise InvalidEvent(f"`{key}` is too long or contains NUL", code="invalid_event")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidEvent(f"`{key}` is not valid Unicode", code="invalid_event") from None
    return value


def event_parse(body: bytes) -> dict[str, Any]:
    """Parse a webhook body into an event dict, or raise InvalidEvent.

    Codes: `malformed_json` (not UTF-8 JSON, NaN/Infinity, too deep) and `invalid_event`
    (not an object with `id` = evt_..., `type`, `created`, `data.object`).
    """
    try:
        payload = json.loads(
            body.decode("utf-8"), parse_constant=_reject_constant, parse_float=_finite_float
        )
    except (ValueError, RecursionError):  # JSONDecodeError and UnicodeDecodeError included
        raise InvalidEvent("The body is not valid JSON.", code="malformed_json") from None
    # A value's nesting depth is at most the number of `{` and `[` in its text (each container
    # opens with one; one inside a string only adds to the count, and UTF-8 never has these
    # bytes inside another character): most bodies are proved shallow enough by this count.
    opened = body.count(b"{") + body.count(b"[")
    if opened > MAX_JSON_DEPTH and not _depth_ok(payload, MAX_JSON_DEPTH):
        raise InvalidEvent("The JSON is nested too deeply.", code="malformed_json")
    event_validate(payload)
    return payload


def event_validate(payload: Any) -> None:
    """Check the envelope fields we index on; the rest of the event is stored as-is."""
    if not isinstance(payload, dict):
        raise InvalidEvent("The event must be a JSON object.")
    event_id = _text(payload, "id", max_length=255, required=True)
    if not event_id.startswith("evt_"):
        raise InvalidEvent("`id` must be a Stripe event id (evt_...).")
    _text(payload, "type", max_length=255, required=True)
    _text(payload, "account", max_length=255, required=False)
    _text(payload, "api_version", max_length=64, required=False)
    if payload.get("object", "event") != "event":
        raise InvalidEvent("`object` must be 'event'.")
    created = payload.get("created")
    if type(created) is not int or not _CREATED_MIN <= created <= _CREATED_MAX:
        raise InvalidEvent("`created` must be a unix timestamp.")
    if type(payload.get("livemode", False)) is not bool:
        raise InvalidEvent("`livemode` must be a boolean.")
    data = payload.get("data")
    if not isinstance(data, dict) or not isinstance(data.get("object"), dict):
        raise InvalidEvent("`data.object` must be an object.")


# --- ingest ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class IngestResult:
    stripe_id: str
    created: bool  # False: a duplicate delivery, nothing was written or scheduled


@cache
def _insert_sql(vendor: str) -> tuple[str, tuple[Any, ...]]:
    qn = connection.ops.quote_name
    fields = tuple(f for f in StripeEvent._meta.concrete_fields if not f.primary_key)
    columns = ", ".join(qn(str(f.column)) for f in fields)
    if vendor == "postgresql":
        # The payload goes in as the body's text, cast by the server: no re-serialisation.
        placeholders = ", ".join("%s::jsonb" if f.name == "payload" else "%s" for f in fields)
    else:
        placeholders = ", ".join(["%s"] * len(fields))
    sql = (
        f"INSERT INTO {qn(StripeEvent._meta.db_table)} ({columns}) VALUES ({placeholders}) "
        f"ON CONFLICT ({qn('stripe_id')}) DO NOTHING RETURNING {qn('id')}"
    )
    return sql, fields


def _insert(values: dict[str, Any], raw: str | None) -> bool:
    """INSERT ... ON CONFLICT DO NOTHING RETURNING id: True if this call created the row.

    `values`: the new row's field values by attribute name."""
    sql, fields = _insert_sql(connection.vendor)
    if connection.vendor == "postgresql" and raw is not None:
        # The webhook hot path: a server-side-binding psycopg cursor (prepared after a few
        # uses) costs a fraction of Django's client-side-binding cursor for a ~2 kB payload;
        # no model instance is built (its construction and its two signals cost as much as
        # the parse). The values are of the types psycopg adapts as the fields would.
        import psycopg

        params = [
            raw
            if f.name == "payload"
            else values[f.attname]
            if f.attname in values
            else f.get_default()  # a field this function does not know yet
            for f in fields
        ]
        connection.ensure_connection()
        with connection.wrap_database_errors, psycopg.Cursor(connection.connection) as cursor:
            cursor.execute(sql, params)
            return cursor.fetchone() is not None
    event = StripeEvent(**values)
    params = [f.get_db_prep_save(f.pre_save(event, add=True), connection) for f in fields]
    if connection.vendor == "postgresql":
        payload_index = [f.name for f in fields].index("payload")
        params[payload_index] = json.dumps(event.payload)
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.fetchone() is not None


@prepared_statements()
def event_ingest(
    *, payload: dict[str, Any], raw: str | None = None, schedule: bool = True
) -> IngestResult:
    """Store a validated event once (by Stripe id) and schedule its processing on commit.

    `raw` is the JSON text `payload` was parsed from, if at hand (stored as is: cheaper).

    Concurrent duplicates race on the unique index: exactly one insert wins and only the
    winner schedules. Raises InvalidEvent if the database refuses the content (NUL bytes,
    lone surrogates in strings).
    """
    now = timezone.now()
    stripe_id = payload["id"]
    values = {
        "stripe_id": stripe_id,
        "type": payload["type"],
        "livemode": payload.get("livemode", False),
        "account": payload.get("account") or "",
        "api_version": payload.get("api_version") or "",
        "created": datetime.fromtimestamp(payload["created"], tz=UTC),
        "payload": payload,
        "status": Status.RECEIVED.value,
        "attempts": 0,
        "last_error": "",
        "received_at": now,
        "processed_at": None,
        # The sweeper's safety net if the scheduled task is lost.
        "next_attempt_at": now + timedelta(seconds=gateway_conf.get("STRIPE_EVENTS_SWEEP_GRACE")),
    }
    try:
        if connection.in_atomic_block:  # keep an enclosing transaction usable on DataError
            with transaction.atomic():
                created = _insert(values, raw)
        else:
            created = _insert(values, raw)
    except (DataError, RecursionError, UnicodeEncodeError) as exc:
        raise InvalidEvent(
            f"The event cannot be stored: {exc.__class__.__name__}.", code="invalid_event"
        ) from None
    if created and schedule:
        transaction.on_commit(partial(event_schedule, stripe_id))
    return IngestResult(stripe_id=stripe_id, created=created)


_drain_slots = itertools.count()


def event_schedule(stripe_id: str) -> None:
    """Have a new row processed. Never raises: the row is the source of truth, and the
    sweeper re-drives it if this message is lost (Redis down) or processing fails.

    With drains (STRIPE_EVENTS_DRAINS > 0, a Redis broker, not eager), the row is left to a
    drain of one slot (round robin): its gate is closed (`SET NX`) and the drain published
    only if the gate was open; closed, a drain of that slot is waiting to start, and it will
    claim this row, committed before the gate was tried (`events_drain`). A burst of events
    costs a few drain tasks instead of one task each: Celery's own work per task (the
    prefork hand-off, the ack, two log lines) was most of a worker's CPU per event.
    Otherwise (and if Redis refuses the gate): one `stripe_event_process` task per row."""
    slots = int(gateway_conf.get("STRIPE_EVENTS_DRAINS"))
    if slots > 0 and publishes_directly(DRAIN_TASK):
        drain_schedule(next(_drain_slots) % slots)
        return
    _publish_one(stripe_id)


def drain_schedule(slot: int) -> None:
    """Publish a drain of `slot` unless one is waiting to start. Never raises."""
    key = _gate_key(slot)
    try:
        ttl_ms = int(float(gateway_conf.get("STRIPE_EVENTS_DRAIN_GATE_TTL")) * 1000)
        if not publish_gate_close(key, max(ttl_ms, 1)):
            return
    except Exception:
        logger.warning("drain gate %s unavailable; publishing a drain anyway", key, exc_info=True)
    try:
        task_publish(DRAIN_TASK, gateway_conf.get("STRIPE_EVENTS_QUEUE"), slot)
    except Exception:
        logger.exception("a drain of slot %s could not be published", slot)
        with contextlib.suppress(Exception):
            publish_gate_open(key)  # the next event publishes again


def _gate_key(slot: int) -> str:
    return DRAIN_GATE.format(gateway_conf.get("STRIPE_EVENTS_QUEUE"), slot)


def _publish_one(stripe_id: str) -> None:
    try:
        task_publish(
            PROCESS_TASK,
            gateway_conf.get("STRIPE_EVENTS_QUEUE"),
            stripe_id,
            retry_policy={"max_retries": 1, "interval_start": 0, "interval_step": 0.1},
        )
    except Exception:
        # Eager mode runs the task inline: its failure is recorded on the row already.
        logger.exception("processing of Stripe event %s could not be scheduled/run", stripe_id)


# --- process ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class ProcessOutcome:
    stripe_id: str
    status: str  # the row's status after this call, or "skipped" when it was not claimable
    attempts: int = 0
    retry_at: datetime | None = None
    error: str = ""


class _LeaseLost(Exception):
    pass


def _expected_livemode() -> bool:
    return str(settings.STRIPE_API_KEY).startswith(("sk_live_", "rk_live_"))


def backoff_seconds(attempt: int) -> float:
    """Delay before retry number `attempt` (1-based): base * 2**(attempt-1), capped."""
    return backoff_delay(
        attempt,
        base=float(gateway_conf.get("STRIPE_EVENTS_BACKOFF_BASE")),
        cap=float(gateway_conf.get("STRIPE_EVENTS_BACKOFF_MAX")),
    )


# The inbox's lease follows common.leases' contract (a counter token: `attempts`, incremented
# by each claim; the expiry: `next_attempt_at` while `processing`, otherwise the time of the
# next attempt), written as one statement: the webhook path's hottest, where lease_claim's
# lock-then-update transaction costs three more round trips.


def _lease_sql(vendor: str, async_commit: bool, rows: str) -> tuple[str, list[Any]]:
    """The UPDATE that leases the inbox rows `rows` picks (`= (SELECT id ...)` or `IN (SELECT
    id ...)`, with `{lock}` where the row locks go) and returns them, in one round trip.
    Parameters: status processing, the lease's expiry, then those of `rows`."""
    fields, returning = rawsql.columns(StripeEvent)
    table = StripeEvent._meta.db_table
    lock = " FOR UPDATE SKIP LOCKED" if vendor == "postgresql" else ""
    head, guard = "", ""
    if async_commit:
        # The lease is committed without waiting for its WAL flush (this statement's own
        # transaction only): a lease lost in a crash only means the row is claimed again
        # (the sweeper re-drives it), and the apply's synchronous commit flushes the WAL up
        # to and including this lease before anything booked can be seen.
        head = "WITH lease AS (SELECT set_config('synchronous_commit', 'off', true)) "
        guard = " AND EXISTS (SELECT 1 FROM lease)"
    sql = (
        f"{head}UPDATE {table} SET status = %s, attempts = attempts + 1, next_attempt_at = %s "
        f"WHERE id {rows.format(table=table, lock=lock)}{guard} RETURNING {returning}"
    )
    return sql, fields


@cache
def _claim_sql(vendor: str, async_commit: bool) -> tuple[str, list[Any]]:
    # The row is locked (skipped if another worker holds it), checked claimable (received;
    # or deferred, failed or with an expired lease and due) and leased.
    return _lease_sql(
        vendor,
        async_commit,
        "= (SELECT id FROM {table} WHERE stripe_id = %s AND (status = %s OR "
        "(status IN (%s, %s, %s) AND next_attempt_at <= %s)){lock})",
    )


# An idle drain's pauses between two claims (STRIPE_EVENTS_DRAIN_LINGER): short at first (the
# next event of a steady flow is a few milliseconds away), doubling up to the cap (an empty
# claim is one index probe; a dozen of them cost less than one drain task more).
LINGER_FIRST_PAUSE = 0.002
LINGER_MAX_PAUSE = 0.025


# Rows a drain claims in one statement: the events of one payment, which arrive together, are
# then run by one worker one after the other (the later ones find the payment booked)
# instead of racing two workers to the booking. Small, as every claimed row waits on the
# ones before it: its lease (STRIPE_EVENTS_LEASE) must outlast them.
DRAIN_CLAIM = 4


@cache
def _claim_next_sql(vendor: str, async_commit: bool, count: int) -> tuple[str, list[Any]]:
    # The oldest new rows nobody holds, read in the order of stripe_event_status_idx (status,
    # received_at), so the scan stops after the first `count` rows it can lock. Not `ORDER BY
    # received_at, id`: the index cannot give that order, so every claim read and sorted all
    # the new rows, a claim's cost growing with the backlog it is there to drain (112 rows per
    # scan on average in `bench stack`, thousands at a backlog's peak). Rows received in the
    # same microsecond come in index order; the drain runs what it claimed by (received_at, id).
    # The status and the count are written into the text (constants of this module, not
    # input): with them as parameters, PostgreSQL costed the prepared statement's generic
    # plan for an average status and an unknown LIMIT, found it dearer than planning each
    # call with the values, and so planned every claim (0.16 ms, more than running it).
    if type(count) is not int or count <= 0:
        raise ValueError(f"a claim takes a positive int count of rows, not {count!r}")
    received = str(Status.RECEIVED.value)
    return _lease_sql(
        vendor,
        async_commit,
        f"IN (SELECT id FROM {{table}} WHERE status = '{received}' ORDER BY received_at "
        f"LIMIT {count}{{lock}})",
    )


def _claim_next(now: datetime, count: int) -> list[StripeEvent]:
    """Claim the `count` oldest `received` rows no one else holds (fewer, or none, if there
    are not as many), oldest first. Must be called with no transaction open."""
    lease_until = now + timedelta(seconds=gateway_conf.get("STRIPE_EVENTS_LEASE"))
    async_commit = connection.vendor == "postgresql" and not connection.in_atomic_block
    sql, fields = _claim_next_sql(connection.vendor, async_commit, count)
    found = rawsql.fetch_all(sql, [Status.PROCESSING, lease_until])
    rows = [rawsql.instance(StripeEvent, fields, values) for values in found]
    return sorted(rows, key=lambda row: (row.received_at, row.pk))


def _claim(event_id: str, now: datetime) -> StripeEvent | None:
    lease_until = now + timedelta(seconds=gateway_conf.get("STRIPE_EVENTS_LEASE"))
    # Asynchronous commit only for a statement that is its own transaction: inside an
    # enclosing one, the setting would last until that transaction's commit.
    async_commit = connection.vendor == "postgresql" and not connection.in_atomic_block
    sql, fields = _claim_sql(connection.vendor, async_commit)
    params = [Status.PROCESSING, lease_until, event_id, Status.RECEIVED]
    params += [Status.DEFERRED, Status.FAILED, Status.PROCESSING, now]
    values = rawsql.fetch_one(sql, params)  # commits at once (autocommit): the lease is seen
    return None if values is None else rawsql.instance(StripeEvent, fields, values)


def _lease_held(row: StripeEvent, token: int) -> bool:
    """Lock the row (until commit) and say whether this worker's lease on it still holds."""
    lock = " FOR UPDATE" if connection.features.has_select_for_update else ""
    found = rawsql.fetch_one(
        f"SELECT status, attempts FROM {StripeEvent._meta.db_table} WHERE id = %s{lock}",
        [row.pk],
    )
    return found is not None and found[0] == Status.PROCESSING and found[1] == token


def _finish(row: StripeEvent, token: int, status: str, note: str, now: datetime) -> int:
    return rawsql.execute(
        f"UPDATE {StripeEvent._meta.db_table} SET status = %s, processed_at = %s, "
        "next_attempt_at = NULL, last_error = %s WHERE id = %s AND status = %s AND attempts = %s",
        [status, now, note, row.pk, Status.PROCESSING, token],
    )


def _record_retry(
    row: StripeEvent, token: int, status: str, error: str, retry_in: float | None
) -> ProcessOutcome:
    """Schedule the next attempt, or give up. A FAILED row (the handler raised) gives up
    after STRIPE_EVENTS_MAX_ATTEMPTS. A DEFERRED row is waiting for data Stripe can still
    deliver (an event it depends on, a balance transaction not attached yet): it is not given
    up after a number of tries but only once it is older than STRIPE_EVENTS_DEFER_HORIZON
    (Stripe's own retry window); past its first quick tries it backs off like a failure."""
    now = timezone.now()
    error = error[:MAX_ERROR_LENGTH]
    retry_at: datetime | None
    max_attempts = gateway_conf.get("STRIPE_EVENTS_MAX_ATTEMPTS")
    if status == Status.DEFERRED:
        horizon = timedelta(seconds=float(gateway_conf.get("STRIPE_EVENTS_DEFER_HORIZON")))
        give_up = now - row.received_at >= horizon
        reason = f"gave up after {horizon.total_seconds():.0f} s ({token} attempts)"
        if token >= max_attempts:
            retry_in = max(retry_in or 0.0, backoff_seconds(token - max_attempts + 1))
    else:
        give_up = token >= max_attempts
        reason = f"gave up after {token} attempts"
    if give_up:
        status, retry_at = Status.FAILED, None
        error = f"{reason}: {error}"[:MAX_ERROR_LENGTH]
        logger.error("Stripe event %s (%s) failed for good: %s", row.stripe_id, row.type, error)
    else:
        delay = backoff_seconds(token) if retry_in is None else max(0.0, retry_in)
        retry_at = now + timedelta(seconds=delay)
    StripeEvent.objects.filter(pk=row.pk, status=Status.PROCESSING, attempts=token).update(
        status=status, next_attempt_at=retry_at, last_error=error
    )
    return ProcessOutcome(row.stripe_id, status, token, retry_at, error)


def _settle(row: StripeEvent, token: int, result: HandlerResult) -> ProcessOutcome:
    """Record the outcome `prepare` settled, if this worker's lease still holds (the same
    guard as the apply transaction's lease check: status `processing`, attempts = token)."""
    status = Status.IGNORED if result.status == "ignored" else Status.PROCESSED
    note = result.note[:MAX_ERROR_LENGTH]
    if not _finish(row, token, status, note, timezone.now()):
        logger.warning("Stripe event %s: lease lost, another worker owns it", row.stripe_id)
        return ProcessOutcome(row.stripe_id, "skipped", token)
    return ProcessOutcome(row.stripe_id, status, token, error=note)


@prepared_statements()
def event_process(*, event_id: str) -> ProcessOutcome:
    """Claim the inbox row of Stripe event `event_id` and run its handler once.

    Not claimable (already processed, claimed by another worker, not yet due) -> "skipped".
    Must be called with no transaction open: the handler's `prepare` may call Stripe, and
    `apply` + the status change commit together in a durable transaction of their own.
    """
    now = timezone.now()
    row = _claim(event_id, now)
    if row is None:
        return ProcessOutcome(event_id, "skipped")
    return _process_claimed(row, now)


def _process_claimed(row: StripeEvent, now: datetime) -> ProcessOutcome:
    """Run the handler of `row`, claimed by this worker at `now` (its lease token: attempts)."""
    event_id = row.stripe_id
    token = row.attempts

    if row.livemode != _expected_livemode():
        note = f"livemode={row.livemode} does not match the API key's mode"
        _finish(row, token, Status.IGNORED, note, now)
        return ProcessOutcome(event_id, Status.IGNORED, token, error=note)
    registration = HANDLERS.get(row.type)
    if registration is None:
        _finish(row, token, Status.IGNORED, "", now)
        return ProcessOutcome(event_id, Status.IGNORED, token)

    try:
        prepared = registration.prepare(row) if registration.prepare is not None else None
        if isinstance(prepared, HandlerResult):
            # The outcome is settled before any write (see registry: nothing to apply): the
            # lease-guarded UPDATE alone records it, as the apply transaction's last
            # statement would, without BEGIN, the lease lock and COMMIT around it.
            return _settle(row, token, prepared)
        with transaction.atomic(durable=True):
            # The row as claimed is what the handler reads (its payload never changes); the
            # lock re-checks that the lease is still this worker's before anything is applied.
            if not _lease_held(row, token):
                raise _LeaseLost
            if registration.prepare is None:
                result = registration.apply(row)
            else:
                result = registration.apply(row, prepared)
            if result is not None and not isinstance(result, HandlerResult):
                raise TypeError(f"{registration.name} returned {result!r}, not a HandlerResult")
            status = Status.IGNORED if result and result.status == "ignored" else Status.PROCESSED
            note = result.note if result else ""
            done_at = timezone.now()
            _finish(row, token, status, note[:MAX_ERROR_LENGTH], done_at)
    except _LeaseLost:
        logger.warning("Stripe event %s: lease lost, another worker owns it", event_id)
        return ProcessOutcome(event_id, "skipped", token)
    except DeferEvent as exc:
        logger.info("Stripe event %s deferred: %s", event_id, exc.reason)
        return _record_retry(row, token, Status.DEFERRED, f"deferred: {exc.reason}", exc.retry_in)
    except Exception as exc:
        logger.exception("Stripe event %s (%s): handler failed", event_id, row.type)
        return _record_retry(row, token, Status.FAILED, f"{exc.__class__.__name__}: {exc}", None)
    return ProcessOutcome(event_id, status, token, error=note)


@dataclass(frozen=True)
class DrainResult:
    processed: int  # rows claimed and run (whatever their outcome)
    statuses: dict[str, int]  # outcome status -> count
    handed_over: bool  # the batch was full: another drain of the slot was scheduled


@prepared_statements()
def events_drain(*, slot: int, limit: int | None = None) -> DrainResult:
    """The drain of `slot`: open the slot's gate, then claim and process the oldest new row
    until none is left to claim, or `limit` (STRIPE_EVENTS_DRAIN_BATCH) rows are done or
    STRIPE_EVENTS_DRAIN_SECONDS have passed, when it schedules the slot's next drain and
    stops (the worker's other tasks take their turn; a slow Stripe never holds it for long).
    Finding none, it keeps looking for STRIPE_EVENTS_DRAIN_LINGER before it ends: with two
    worker processes, a drain would otherwise end in nearly every gap between two events and
    the next event would publish a new one (Celery's own work per task, in the worker's
    pool process and in its parent, was about a sixth of Celery's CPU in `bench stack`).

    Why no new row is left behind: a row whose `event_schedule` found the gate closed was
    committed before that; the drain that closed the gate had not opened it yet, so it
    opens it later and claims from then on every new row not claimed by another worker,
    this one included. A row that ends deferred or failed gets its own
    `stripe_event_process` message at its retry time, as after a single event's task; a
    drain lost with its worker leaves leased rows to the sweeper (lease expiry), new ones to
    the next drain or the sweeper (STRIPE_EVENTS_SWEEP_GRACE). Must be called with no
    transaction open."""
    key = _gate_key(slot)
    try:
        publish_gate_open(key)
    except Exception:  # it expires (STRIPE_EVENTS_DRAIN_GATE_TTL); new rows wait until then
        logger.warning("drain gate %s could not be opened", key, exc_info=True)
    limit = int(gateway_conf.get("STRIPE_EVENTS_DRAIN_BATCH")) if limit is None else limit
    deadline = time.monotonic() + float(gateway_conf.get("STRIPE_EVENTS_DRAIN_SECONDS"))
    linger = float(gateway_conf.get("STRIPE_EVENTS_DRAIN_LINGER"))
    idle_until: float | None = None  # set by the first empty claim, cleared by a full one
    pause = LINGER_FIRST_PAUSE
    statuses: dict[str, int] = {}
    processed = 0
    while processed < limit and (processed == 0 or time.monotonic() < deadline):
        now = timezone.now()
        rows = _claim_next(now, min(DRAIN_CLAIM, limit - processed))
        if not rows:
            clock = time.monotonic()
            if idle_until is None:
                idle_until = clock + linger
            if clock + pause > idle_until or (processed > 0 and clock + pause >= deadline):
                # Nothing is left behind: every row committed before this drain opened its
                # gate was claimable just now, and a later one published a drain of its own.
                return DrainResult(processed, statuses, handed_over=False)
            time.sleep(pause)
            pause = min(pause * 2, LINGER_MAX_PAUSE)
            continue
        idle_until, pause = None, LINGER_FIRST_PAUSE
        for row in rows:  # all of them: each is leased to this worker
            outcome = _process_claimed(row, timezone.now())
            processed += 1
            statuses[outcome.status] = statuses.get(outcome.status, 0) + 1
            if outcome.retry_at is not None:
                _schedule_retry(outcome.stripe_id, outcome.retry_at)
    drain_schedule(slot)
    return DrainResult(processed, statuses, handed_over=True)


def _schedule_retry(stripe_id: str, at: datetime) -> None:
    """The row's next attempt as its own task (what a single event's task does by retrying
    itself); never raises: the sweeper re-drives the row when it is due anyway."""
    countdown = max(0.0, (at - timezone.now()).total_seconds()) + 1.0
    try:
        task_send(
            PROCESS_TASK,
            stripe_id,
            queue=gateway_conf.get("STRIPE_EVENTS_QUEUE"),
            countdown=countdown,
        )
    except Exception:
        logger.exception("the retry of Stripe event %s could not be scheduled", stripe_id)


# --- sweep, replay, sync ---------------------------------------------------------------------
def events_due(*, limit: int, now: datetime | None = None) -> list[str]:
    """Stripe ids of rows the sweeper must re-drive: scheduling lost, retry due, lease expired."""
    now = now or timezone.now()
    return list(
        StripeEvent.objects.filter(
            next_attempt_at__lte=now,
            status__in=[Status.RECEIVED, Status.DEFERRED, Status.FAILED, Status.PROCESSING],
        )
        .order_by("next_attempt_at")
        .values_list("stripe_id", flat=True)[:limit]
    )


def _schedule_each(stripe_ids: Sequence[str]) -> None:
    # One task per row: a due row may be deferred, failed or leased, which drains leave alone.
    for stripe_id in stripe_ids:
        _publish_one(stripe_id)


SWEEPER = Sweeper(
    name="stripe events",
    due=lambda now, limit: events_due(limit=limit, now=now),
    requeue=_schedule_each,
    batch=lambda: int(gateway_conf.get("STRIPE_EVENTS_SWEEP_BATCH")),
)


def events_sweep(*, limit: int | None = None) -> int:
    """Schedule processing of every due row (at most `limit`); returns how many."""
    return SWEEPER(limit=limit)


def event_replay(*, event_id: str, fetch_missing: bool = True) -> ProcessOutcome:
    """Run an event's handler again now, whatever its status (handlers are idempotent).

    An event missing from the inbox is fetched from Stripe and stored first (with
    `fetch_missing`). Refuses (EventBusy) while another worker holds its lease.
    """
    if not StripeEvent.objects.filter(stripe_id=event_id).exists():
        if not fetch_missing:
            raise EventNotFound(f"{event_id} is not in the inbox.")
        from stripe_gateway.client import get_gateway

        payload = get_gateway().event_retrieve(event_id)
        event_validate(payload)
        event_ingest(payload=payload, schedule=False)
    now = timezone.now()
    reset = (
        StripeEvent.objects.filter(stripe_id=event_id)
        .exclude(status=Status.PROCESSING, next_attempt_at__gt=now)
        .update(
            status=Status.RECEIVED,
            attempts=0,
            processed_at=None,
            next_attempt_at=now + timedelta(seconds=gateway_conf.get("STRIPE_EVENTS_SWEEP_GRACE")),
        )
    )
    if not reset:
        raise EventBusy(f"{event_id} is being processed right now; try again later.")
    return event_process(event_id=event_id)


def events_failed() -> list[str]:
    return list(
        StripeEvent.objects.filter(status=Status.FAILED)
        .order_by("created", "id")
        .values_list("stripe_id", flat=True)
    )


@dataclass
class SyncResult:
    seen: int = 0
    stored: int = 0
    already: int = 0
    invalid: int = 0


def events_sync(
    *,
    since: datetime,
    types: Sequence[str] | None = None,
    undelivered_only: bool = False,
    schedule: bool = True,
    events: Iterable[dict[str, Any]] | None = None,
) -> SyncResult:
    """Fetch events created since `since` from the API and store the missing ones.

    Fills the gaps missed deliveries leave (Stripe keeps events for 30 days). Stored events
    are scheduled like webhook deliveries; ones already in the inbox are left alone.
    """
    if events is None:
        from stripe_gateway.client import get_gateway

        events = get_gateway().events_iter(
            created_gte=int(since.timestamp()),
            types=types,
            delivery_success=False if undelivered_only else None,
        )
    result = SyncResult()
    for payload in events:
        result.seen += 1
        try:
            event_validate(payload)
            ingested = event_ingest(payload=payload, schedule=schedule)
        except InvalidEvent as exc:
            result.invalid += 1
            logger.warning("skipping event %r from the API: %s", payload.get("id"), exc)
            continue
        if ingested.created:
            result.stored += 1
        else:
            result.already += 1
    return result
