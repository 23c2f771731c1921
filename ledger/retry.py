"""Bounded retry of deadlocks, serialization failures and lock timeouts, for the outermost
service only: inside an enclosing atomic block the database transaction is already aborted,
so the error goes up to whoever owns that transaction (and its retry).

Every call of a wrapped service is reported to the registered `RetryObserver`s (ops.metrics
registers one for the ledger write metrics): this module imports nothing above it."""

from __future__ import annotations

import functools
import logging
import random
import time
from collections.abc import Callable
from typing import ParamSpec, Protocol, TypeVar

from django.db import DatabaseError, connection

from common.backoff import backoff_delay
from ledger.errors import LedgerBusy

logger = logging.getLogger(__name__)

P = ParamSpec("P")
R = TypeVar("R")

RETRYABLE_SQLSTATES = frozenset(
    {
        "40P01",  # deadlock_detected
        "40001",  # serialization_failure
        "55P03",  # lock_not_available (lock_timeout)
    }
)
MAX_ATTEMPTS = 5


class RetryObserver(Protocol):
    """Told about every call of a wrapped service; must be quick and must not raise."""

    def retried(self, operation: str, sqlstate: str) -> None:
        """An attempt of `operation` failed on `sqlstate` and is about to be retried."""

    def finished(self, operation: str, seconds: float, outcome: str) -> None:
        """A call ended after `seconds` (every attempt and backoff included): outcome "ok",
        "busy" (attempts exhausted: LedgerBusy) or "error" (any other exception)."""


_observers: list[RetryObserver] = []


def observer_add(observer: RetryObserver) -> None:
    """Register `observer` for every call of every wrapped service (once, at startup)."""
    _observers.append(observer)


def _operation(fn: Callable[..., object]) -> str:
    """A short stable label: ledger.services.posting._post_prepared -> ledger.posting.
    _post_prepared; a nested function drops its "<locals>"."""
    module = fn.__module__.replace(".services.", ".").removesuffix(".services")
    return f"{module}.{fn.__qualname__.replace('<locals>.', '')}"


def is_retryable(exc: BaseException) -> bool:
    cause = exc.__cause__ if isinstance(exc, DatabaseError) else exc
    return getattr(cause, "sqlstate", None) in RETRYABLE_SQLSTATES


def retry_on_conflict(fn: Callable[P, R]) -> Callable[P, R]:
    """Run `fn` up to MAX_ATTEMPTS times while it fails on a retryable database error, with
    jittered exponential backoff (5 ms, 10 ms, 20 ms, ...). Only retries when called outside
    any atomic block; raises LedgerBusy when the attempts are exhausted."""

    operation = _operation(fn)

    @functools.wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        if not _observers:
            return _attempts(*args, **kwargs)
        started = time.perf_counter()
        outcome = "error"
        try:
            result = _attempts(*args, **kwargs)
            outcome = "ok"
            return result
        except LedgerBusy:
            outcome = "busy"
            raise
        finally:
            seconds = time.perf_counter() - started
            for observer in _observers:
                observer.finished(operation, seconds, outcome)

    def _attempts(*args: P.args, **kwargs: P.kwargs) -> R:
        if connection.in_atomic_block:
            return fn(*args, **kwargs)
        for attempt in range(1, MAX_ATTEMPTS + 1):
            try:
                return fn(*args, **kwargs)
            except DatabaseError as exc:
                if not is_retryable(exc):
                    raise
                sqlstate = getattr(exc.__cause__, "sqlstate", "?")
                if attempt == MAX_ATTEMPTS:
                    logger.error("ledger: %s failed %d times (%s)", fn.__name__, attempt, sqlstate)
                    raise LedgerBusy(
                        "The ledger is busy (lock contention); retry the request.",
                        extra={"sqlstate": sqlstate},
                    ) from exc
                logger.info("ledger: %s retry %d after %s", fn.__name__, attempt, sqlstate)
                for observer in _observers:
                    observer.retried(operation, sqlstate)
                time.sleep(random.uniform(0.5, 1.5) * backoff_delay(attempt, base=0.005, cap=1.0))
        raise AssertionError("unreachable")  # pragma: no cover

    return wrapper
