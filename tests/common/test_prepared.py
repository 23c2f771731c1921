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
