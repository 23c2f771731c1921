"""The Celery application, wired to Django settings (keys prefixed ``CELERY_``)."""

import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from functools import cache
from typing import Any, NamedTuple

from celery import Celery, signals
from celery.utils.nodenames import anon_nodename
from celery.utils.saferepr import saferepr
from kombu import serialization
from kombu.utils.uuid import uuid

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")


def _reuse_redis_clients() -> None:
    """Publish through one `redis.Redis` per kombu channel instead of a new one per message.

    kombu's Redis transport (5.x) builds a fresh client for every message it publishes
    (`Channel._put` -> `conn_or_acquire()` -> `_create_client()`), and redis-py's constructor
    copies ~170 response callbacks: about a third of the CPU of a webhook delivery, whose
    processing task is published on commit. A client is thread-safe and holds no connection
    (it takes one from the channel's pool per command), so one per channel is reused, and
    rebuilt when the channel replaces its pool (after a connection error). Patched only if the
    transport still has the shape this relies on."""
    try:
        from kombu.transport import redis as transport
    except ImportError:  # pragma: no cover - redis extra missing
        return
    channel = getattr(transport, "Channel", None)
    if channel is None or getattr(channel, "_eats_reuses_clients", False):
        return
    if not all(hasattr(channel, name) for name in ("conn_or_acquire", "_create_client", "pool")):
        return

    @contextmanager
    def conn_or_acquire(self: Any, client: Any = None) -> Iterator[Any]:
        if client:
            yield client
            return
        pool = self.pool
        cached = self.__dict__.get("_eats_client")
        if cached is None or cached[0] is not pool:
            cached = self.__dict__["_eats_client"] = (pool, self._create_client())
        yield cached[1]

    channel.conn_or_acquire = conn_or_acquire
    channel._eats_reuses_clients = True


_reuse_redis_clients()

app = Celery("eats")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


@signals.task_prerun.connect(weak=False)
@signals.task_postrun.connect(weak=False)
def _close_old_connections(sender: Any = None, **_: Any) -> None:
    """Before and after each task, what Django does around each request: close a database
    connection older than CONN_MAX_AGE, broken, or not back in autocommit, keep the others.

    Celery's Django fixup would otherwise close every connection around every task (it only
    stops with `CELERY_DB_REUSE_MAX`, set in settings, and then still closes them all every
    that many tasks). An eager task runs inside a web request, which does this already."""
    if sender is not None and getattr(sender.request, "is_eager", False):
        return
    from django.db import close_old_connections

    close_old_connections()


def task_send(name: str, /, *args: Any, **options: Any) -> None:
    """Send the registered task `name` with positional `args` and `apply_async` options
    (queue, countdown, retry_policy...); eager mode runs it inline as usual.

    Services schedule their follow-up work through this, by task name, so that each app's
    `tasks.py` imports its services and never the reverse (the import contracts forbid the
    cycle). Every app imports its `tasks` module in `AppConfig.ready()`, so the name is
    registered in web, worker and beat processes alike; an unknown name is a KeyError.
    """
    app.tasks[name].apply_async(args, **options)


# Execution options of a task (`Task._get_exec_options`) that `task_publish` reproduces:
# anything else set (a time limit, an expiry, a priority, a compression...) takes `task_send`.
_PUBLISH_OPTIONS = {"serializer": "json"}


def _publishes_directly(name: str) -> bool:
    if app.conf.task_always_eager or app.current_worker_task is not None:
        return False  # eager: run inline; in a task: the parent's ids are carried by send_task
    return _publishable(name)


@cache
def _publishable(name: str) -> bool:
    """The configuration allows `task_publish`'s direct path for task `name` (read once: a
    lookup in Celery's configuration goes through the Django settings, ~20 us each)."""
    conf = app.conf
    if str(conf.broker_url).split("://", 1)[0] not in ("redis", "rediss"):
        return False
    if conf.task_protocol != 2 or conf.task_routes or conf.task_compression:
        return False
    if conf.task_send_sent_event or conf.task_serializer != "json":
        return False
    task = app.tasks[name]
    exec_options = getattr(task, "_get_exec_options", None)
    if exec_options is None:
        return False
    options = {k: v for k, v in exec_options().items() if v is not None}
    return options == _PUBLISH_OPTIONS and not task.ignore_result


class _MessageConstants(NamedTuple):
    maxlevels: int
    kwargsrepr: str
    origin: str
    acquire_timeout: float | None


@cache
def _message_constants(pid: int) -> _MessageConstants:
    """What `as_task_v2` and `producer_or_acquire` look up for every message (four lookups in
    Celery's configuration, through the Django settings, a host name call, the repr of no
    keyword arguments), read once per process (`pid`: a forked worker reads its own)."""
    conf = app.conf
    maxlevels = conf.task_repr_maxlevels
    return _MessageConstants(
        maxlevels=maxlevels,
        kwargsrepr=saferepr({}, app.amqp.kwargsrepr_maxsize, maxlevels=maxlevels),
        origin=anon_nodename(),
        acquire_timeout=conf.broker_pool_acquire_timeout,
    )


def publishes_directly(name: str) -> bool:
    """`task_publish` puts task `name`'s message on Redis itself here (not eager, not inside a
    worker task, the broker is Redis, the task has no execution options)."""
    return _publishes_directly(name)


@cache
def _gate_client(pid: int, url: str) -> Any:
    """One Redis client per process (`pid`: a forked process builds its own) on the broker's
    server (`url`), for the publish gates; thread-safe, connections from its own pool."""
    import redis

    return redis.Redis.from_url(url, socket_timeout=2, socket_connect_timeout=2)


def publish_gate_close(key: str, ttl_ms: int) -> bool:
    """Close the gate `key` for at most `ttl_ms` (Redis `SET NX PX`): True if this call
    closed it, and so must publish the message the gate coalesces; False if it was closed
    already (that message is published and its task has not started yet). Raises
    redis' errors: the caller falls back to publishing without the gate."""
    return bool(
        _gate_client(os.getpid(), str(app.conf.broker_url)).set(key, b"1", nx=True, px=ttl_ms)
    )


def publish_gate_open(key: str) -> None:
    """Open the gate `key` (its task has started: what is stored from now on needs another
    message). Raises redis' errors."""
    _gate_client(os.getpid(), str(app.conf.broker_url)).delete(key)


def task_publish(name: str, queue: str, /, *args: Any, **fallback: Any) -> None:
    """Send the registered task `name` with positional `args` to `queue`: the message
    `task_send` would send, built by Celery itself (`amqp.as_task_v2`), put on the kombu
    channel directly.

    For the one message every webhook delivery publishes: `apply_async` (its routing, its
    option lookups through the Django settings, kombu's Producer with its declare and retry
    wrappers) cost as much again as the message itself. Only on the Redis transport, outside
    of a worker task, for a task with no execution options (see `_publishes_directly`);
    otherwise, and when this path fails, `task_send(name, *args, queue=queue, **fallback)`
    (a message sent twice is harmless to a caller whose processing is idempotent, as the
    webhook inbox's is: the second finds its row claimed or processed).
    """
    if not _publishes_directly(name):
        task_send(name, *args, queue=queue, **fallback)
        return
    try:
        constants = _message_constants(os.getpid())
        message = app.amqp.as_task_v2(
            uuid(),
            name,
            args=args,
            reply_to=app.thread_oid,
            ignore_result=False,
            argsrepr=saferepr(args, app.amqp.argsrepr_maxsize, maxlevels=constants.maxlevels),
            kwargsrepr=constants.kwargsrepr,
            origin=constants.origin,
        )
        headers, properties, body, _ = message
        content_type, content_encoding, payload = serialization.dumps(body, serializer="json")
        # A pooled connection's channel (kombu's `Producer` from the producer pool would be
        # revived around it for every message: exchange and serializer set-up, unused here).
        pool: Any = app.pool  # of kombu connections (the stubs say producers)
        with pool.acquire(block=True, timeout=constants.acquire_timeout) as connection:
            channel: Any = connection.default_channel  # a kombu virtual channel (Redis)
            properties = {**properties, "delivery_mode": 2}  # persistent, as kombu's default
            channel.basic_publish(
                channel.prepare_message(
                    payload, 0, content_type, content_encoding, headers, properties
                ),
                exchange="",
                routing_key=queue,
            )
    except Exception:
        logging.getLogger(__name__).warning(
            "direct publish of %s failed; sending it through apply_async", name, exc_info=True
        )
        task_send(name, *args, queue=queue, **fallback)
