"""The inbox moved from `marketplace` to `stripe_gateway` without losing a row.

Runs the real migrations backwards to the last state where `marketplace` owned the model,
stores events through that historical model, migrates forwards and reads them back through
the new app's model (state only moved: same table, same ids, same payloads)."""

from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
from django.contrib.contenttypes.models import ContentType
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

from stripe_gateway.models import StripeEvent

BEFORE = [("marketplace", "0006_refund_approval_campaign_close"), ("stripe_gateway", None)]
BEFORE_STATE = [("marketplace", "0006_refund_approval_campaign_close")]
AFTER = [("marketplace", "0007_stripe_event_moved"), ("stripe_gateway", "0001_initial")]


def _migrate(targets: list[tuple[str, str | None]]) -> MigrationExecutor:
    executor = MigrationExecutor(connection)
    executor.loader.build_graph()
    executor.migrate(targets)
    return MigrationExecutor(connection)


@pytest.fixture
def at_before_the_move() -> Iterator[MigrationExecutor]:
    executor = _migrate(BEFORE)
    try:
        yield executor
    finally:
        # Leave the database fully migrated for the rest of the suite, whatever happened.
        executor = MigrationExecutor(connection)
        executor.migrate(executor.loader.graph.leaf_nodes())


@pytest.mark.django_db(transaction=True)
def test_migrating_a_database_holding_events_keeps_every_row(at_before_the_move):
    # given: the inbox as the marketplace app owned it, holding events in several states
    old_apps = at_before_the_move.loader.project_state(BEFORE_STATE).apps
    OldStripeEvent = old_apps.get_model("marketplace", "StripeEvent")
    created = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)
    rows = [
        OldStripeEvent.objects.create(
            stripe_id=f"evt_move_{n}",
            type="charge.succeeded",
            created=created,
            payload={"id": f"evt_move_{n}", "data": {"object": {"id": f"ch_{n}"}}},
            status=status,
            attempts=n,
        )
        for n, status in enumerate(["received", "processed", "failed"], start=1)
    ]
    assert OldStripeEvent._meta.db_table == "marketplace_stripe_event"
    ContentType.objects.clear_cache()
    content_type, _ = ContentType.objects.get_or_create(
        app_label="marketplace", model="stripeevent"
    )

    # when
    executor = _migrate(AFTER)

    # then: the same rows, read through the new app's historical and current models
    NewStripeEvent = executor.loader.project_state(AFTER).apps.get_model(
        "stripe_gateway", "StripeEvent"
    )
    moved = {
        e.stripe_id: (e.pk, e.status, e.attempts, e.payload)
        for e in NewStripeEvent.objects.order_by("pk")
    }
    assert moved == {r.stripe_id: (r.pk, r.status, r.attempts, r.payload) for r in rows}
    assert StripeEvent.objects.filter(stripe_id__startswith="evt_move_").count() == 3
    assert StripeEvent.objects.get(stripe_id="evt_move_2").data_object == {"id": "ch_2"}
    # and the content type (with any permission granted on it) followed the model
    content_type.refresh_from_db()
    ContentType.objects.clear_cache()
    assert content_type.app_label == "stripe_gateway"
    assert not ContentType.objects.filter(app_label="marketplace", model="stripeevent").exists()


def _inbox_indexes() -> dict[str, str]:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT indexname, indexdef FROM pg_indexes WHERE tablename = %s",
            ["marketplace_stripe_event"],
        )
        return dict(cursor.fetchall())


@pytest.mark.skipif(connection.vendor != "postgresql", reason="a PostgreSQL index")
@pytest.mark.django_db(transaction=True)
def test_the_unread_like_index_is_dropped_and_comes_back_on_the_way_down() -> None:
    like = "marketplace_stripe_event_stripe_id_a983b47f_like"  # the name Django gave it
    try:
        # given: the migrated database: the lookup by id keeps its unique index
        indexes = _inbox_indexes()
        assert like not in indexes
        assert not [d for d in indexes.values() if "pattern_ops" in d]
        assert "marketplace_stripe_event_stripe_id_key" in indexes

        # when: migrated back
        _migrate([("stripe_gateway", "0001_initial")])

        # then: the index is there again, as Django made it
        assert "(stripe_id varchar_pattern_ops)" in _inbox_indexes()[like]
    finally:
        executor = MigrationExecutor(connection)
        executor.migrate(executor.loader.graph.leaf_nodes())
    assert like not in _inbox_indexes()
