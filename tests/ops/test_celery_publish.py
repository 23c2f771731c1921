"""Publishing a task reuses the kombu channel's Redis client (config.celery._reuse_redis_clients)
instead of building one per message; a channel whose pool was replaced gets a new one."""

from __future__ import annotations

from typing import Any

from kombu.transport import redis as transport

import config.celery  # noqa: F401  (applies the patch)


class _Channel:
    """Just what the patched `conn_or_acquire` uses of a kombu Redis channel."""

    conn_or_acquire = transport.Channel.conn_or_acquire

    def __init__(self) -> None:
        self.pool: Any = object()
        self.created = 0

    def _create_client(self) -> object:
        self.created += 1
        return object()


def test_one_client_per_channel_and_pool() -> None:
    channel = _Channel()
    with channel.conn_or_acquire() as first, channel.conn_or_acquire() as second:
        assert first is second
    given = object()
    with channel.conn_or_acquire(given) as passed:
        assert passed is given
    assert channel.created == 1

    channel.pool = object()  # the channel reconnected
    with channel.conn_or_acquire() as third:
        assert third is not first
    assert channel.created == 2


def test_a_direct_publish_puts_the_message_apply_async_puts() -> None:
    # given: a worker's broker as in production (tests run tasks eagerly)
    import json
    import uuid

    import redis
    from django.conf import settings

    from config.celery import _publishes_directly, app, task_publish, task_send

    name = "marketplace.webhooks.tasks.stripe_event_process"
    queue = f"test-direct-publish-{uuid.uuid4().hex[:8]}"
    client = redis.Redis.from_url(settings.CELERY_BROKER_URL)
    eager = app.conf.task_always_eager
    app.conf.task_always_eager = False
    try:
        assert _publishes_directly(name)

        # when: one message each way
        task_send(name, "evt_1", queue=queue)
        task_publish(name, queue, "evt_1")
        newest_first = [json.loads(raw) for raw in client.lrange(queue, 0, -1)]
    finally:
        app.conf.task_always_eager = eager
        client.delete(queue)

    # then: the same message but for its ids
    published, sent = newest_first
    for message in (published, sent):
        assert message["headers"]["id"] == message["headers"]["root_id"]
        assert message["headers"]["id"] == message["properties"]["correlation_id"]
        for key in ("id", "root_id"):
            message["headers"].pop(key)
        for key in ("correlation_id", "delivery_tag"):
            message["properties"].pop(key)
    assert published == sent


def test_no_direct_publish_from_an_eager_app_or_another_broker() -> None:
    from config.celery import _publishable, _publishes_directly, app

    name = "marketplace.webhooks.tasks.stripe_event_process"
    saved = app.conf.task_always_eager, app.conf.broker_url
    try:
        app.conf.task_always_eager = True
        assert not _publishes_directly(name)
        app.conf.task_always_eager = False
        app.conf.broker_url = "amqp://guest@localhost//"
        _publishable.cache_clear()  # read once per process otherwise
        assert not _publishes_directly(name)
    finally:
        app.conf.task_always_eager, app.conf.broker_url = saved
        _publishable.cache_clear()
