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
