"""Bounded retry of deadlocks, serialization failures and lock timeouts, for the outermost
service only: inside an enclosing atomic block the database transaction is already aborted,
so the error goes up to whoever owns that transaction (and its retry)."""

from __future__ import annotations

import functools
import logging
import random
import time
from collections.abc import Callable
from typing import ParamSpec, TypeVar

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


def is_retryable(exc: BaseException) -> bool:
    cause = exc.__cause__ if isinstance(exc, DatabaseError) else exc
    return getattr(cause, "sqlstate", None) in RETRYABLE_SQLSTATES


def retry_on_conflict(fn: Callable[P, R]) -> Callable[P, R]:
    """Run `fn` up to MAX_ATTEMPTS times while it fails on a retryable database error, with
    jittered exponential backoff (5 ms, 10 ms, 20 ms, ...). Only retries when called outside
    any atomic block; raises LedgerBusy when the attempts are exhausted."""

    @functools.wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
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
                time.sleep(random.uniform(0.5, 1.5) * backoff_delay(attempt, base=0.005, cap=1.0))
        raise AssertionError("unreachable")  # pragma: no cover

    return wrapper
