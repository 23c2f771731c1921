"""Prepared statements only inside `prepared_statements()` (common/prepared.py): the hot write
paths prepare what they run often; every other statement is planned per call (a generic plan
made the staff dashboard's order page 7x slower at 200,000 orders)."""

import json

import pytest
from django.db import connection

from common.prepared import PREPARE_THRESHOLD, prepared_statements
from stripe_gateway.services import event_ingest

pytestmark = pytest.mark.skipif(
    connection.vendor != "postgresql", reason="prepared statements are PostgreSQL's"
)


def _prepared_texts() -> list[str]:
    with connection.cursor() as cursor:
        cursor.execute("SELECT statement FROM pg_prepared_statements")
        return [row[0] for row in cursor.fetchall()]


def _run(sql: str, times: int) -> None:
    with connection.cursor() as cursor:
        for _ in range(times):
            cursor.execute(sql, [1])
            cursor.fetchall()


@pytest.mark.django_db
def test_a_statement_run_often_is_prepared_only_inside():
    # given
    outside = "SELECT 1 + %s AS outside_the_hot_paths"
    inside = "SELECT 1 + %s AS inside_a_hot_path"

    # when
    _run(outside, PREPARE_THRESHOLD + 3)
    with prepared_statements():
        _run(inside, PREPARE_THRESHOLD + 3)
    _run(outside, 3)

    # then
    texts = " ".join(_prepared_texts())
    assert "inside_a_hot_path" in texts
    assert "outside_the_hot_paths" not in texts


@pytest.mark.django_db
def test_the_setting_is_restored_after_nesting_and_errors():
    connection.ensure_connection()
    before = connection.connection.prepare_threshold
    assert before is None  # Django's default: nothing prepared outside the hot paths

    with pytest.raises(ZeroDivisionError), prepared_statements():
        with prepared_statements():
            assert connection.connection.prepare_threshold == PREPARE_THRESHOLD
        assert connection.connection.prepare_threshold == PREPARE_THRESHOLD
        1 / 0  # noqa: B018

    assert connection.connection.prepare_threshold == before


@pytest.mark.django_db
def test_the_webhook_inbox_insert_is_prepared():
    # given: a hot write path (each order's and each Stripe event's entry points run inside:
    # event_ingest, event_process, order_place, order_deliver)
    payloads = [
        {
            "id": f"evt_prepared_{i}",
            "object": "event",
            "type": "charge.succeeded",
            "created": 1_700_000_000,
            "livemode": False,
            "data": {"object": {"id": f"ch_prepared_{i}", "object": "charge"}},
        }
        for i in range(PREPARE_THRESHOLD + 1)
    ]

    # when
    for payload in payloads:
        event_ingest(payload=payload, raw=json.dumps(payload), schedule=False)

    # then
    assert any("INSERT INTO" in t and "marketplace_stripe_event" in t for t in _prepared_texts())
    connection.ensure_connection()
    assert connection.connection.prepare_threshold is None  # and only inside


def _plans(fragment: str) -> tuple[int, int]:
    """(generic, custom) plans PostgreSQL made for this connection's prepared statement whose
    text holds `fragment`."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT generic_plans, custom_plans FROM pg_prepared_statements "
            "WHERE statement LIKE %s",
            [f"%{fragment}%"],
        )
        rows = cursor.fetchall()
    assert len(rows) == 1, rows
    return rows[0]


# Two hot statements PostgreSQL had planned on every call although they were run prepared, or
# could be: planning cost more than running them (pg_stat_statements in `bench stack`: the
# token lookup 0.64 ms to plan against 0.07 ms to run, twice per order; the drain's claim
# 0.16 ms). After its first few runs, each must run a generic plan, planned once.
@pytest.mark.django_db
def test_the_api_token_lookup_runs_one_generic_plan():
    from config.auth import TokenAuthentication
    from tests.auth import make_user, token_for

    # given
    token = token_for(make_user("prepared-svc", staff=False)).encode()
    auth = TokenAuthentication()

    # when: requests authenticate, one after the other on this connection
    for _ in range(PREPARE_THRESHOLD + 10):
        auth.authenticate_credentials(token)

    # then: prepared at once, and past PostgreSQL's first five custom plans, no more planning
    generic, custom = _plans('"token_key" =')
    assert custom <= 5 and generic + custom == PREPARE_THRESHOLD + 10


@pytest.mark.django_db
def test_the_drain_claim_runs_one_generic_plan():
    from django.utils import timezone

    from stripe_gateway import services
    from stripe_gateway.models import StripeEvent

    # given: an inbox as in production, nearly all of it processed
    now = timezone.now()
    StripeEvent.objects.bulk_create(
        StripeEvent(
            stripe_id=f"evt_plan_{n}",
            type="charge.updated",
            created=now,
            payload={"id": f"evt_plan_{n}"},
            status=StripeEvent.Status.PROCESSED if n >= 20 else StripeEvent.Status.RECEIVED,
        )
        for n in range(5000)
    )
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE marketplace_stripe_event")

    # when: a drain's claims (here inside the test's transaction, the same plan's concern)
    with prepared_statements():
        for _ in range(PREPARE_THRESHOLD + 10):
            services._claim_next(timezone.now(), services.DRAIN_CLAIM)

    # then
    generic, custom = _plans("ORDER BY received_at LIMIT")
    assert custom <= 5 and generic >= 5


def _executions(fragment: str) -> int:
    """How many times this connection ran its prepared statements whose text holds `fragment`
    (prepared statements outlive a test on its connection: compare before and after)."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT coalesce(sum(generic_plans + custom_plans), 0) FROM pg_prepared_statements "
            "WHERE statement LIKE %s",
            [f"%{fragment}%"],
        )
        return int(cursor.fetchone()[0])


# psycopg prepares nothing on a connection whose threshold is None, `prepare=True` included:
# the ledger's write was parsed and planned on every call outside `prepared_statements()` (the
# payout tasks, reconciliation, staff actions, the ledger API, `bench numscript`).
@pytest.mark.django_db
def test_a_ledger_write_anywhere_is_a_prepared_call():
    from ledger.domain import PostingInput
    from ledger.services import transaction_post

    # given
    before = _executions("FROM ledger_post")

    # when: writes outside any hot path's scope
    for i in range(PREPARE_THRESHOLD + 2):
        transaction_post(postings=[PostingInput("world", f"prepared:{i}", "USD/2", 1)])

    # then: every one ran the prepared call, and the connection's threshold is back to None
    # (other statements are not prepared)
    assert _executions("FROM ledger_post") - before == PREPARE_THRESHOLD + 2
    connection.ensure_connection()
    assert connection.connection.prepare_threshold is None


@pytest.mark.django_db
def test_a_scripts_read_anywhere_is_a_prepared_call():
    from ledger.domain import PostingInput
    from ledger.services import transaction_post

    # given: a template that reads a balance (balance(): never speculated on), funded
    script = (
        "vars { monetary $b = balance(@prepared:src, USD/2) }\n"
        "send $b ( source = @prepared:src destination = @prepared:dst )"
    )
    before = _executions("ledger_script_read(")

    # when: it runs outside any hot path's scope
    for _ in range(PREPARE_THRESHOLD + 2):
        transaction_post(postings=[PostingInput("world", "prepared:src", "USD/2", 10)])
        transaction_post(script=script)

    # then: its reads ran the prepared call
    assert _executions("ledger_script_read(") - before >= PREPARE_THRESHOLD + 2
    assert connection.connection.prepare_threshold is None
