"""Leased claims and their sweeper: how a worker takes rows over for a while, and how rows a
dead worker left behind are found again.

A worker **claims** rows by writing a lease on them: a token (whose claim it is) and an expiry
(until when). While the lease is live nobody else claims the rows. The worker **renews** it
(`Lease.heartbeat`) while it waits on slow calls, and **releases** it when done. Every write
it makes in between is fenced by the token (`Lease.held()`), so a worker whose lease expired
and was taken over writes nothing. A worker that dies simply leaves its lease to expire; the
**sweeper** (`Sweeper`, run by Celery beat) then finds the row by its owner's rule of what is
due (lease expired, retry time reached, state stuck for too long) and queues it again.

The token is either a fresh random string per claim, shared by the rows claimed together (a
`lease_token` column: payouts), or a counter the claim increments (`counter=True`, e.g. an
`attempts` column that also counts tries: the Stripe inbox).

Time is the database's (`now()`) unless the caller passes `now` (a frozen clock in tests, or
a row whose other times are in the application's clock).
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Generic, TypeVar

from django.db import models, transaction
from django.db.models import DateTimeField, ExpressionWrapper, F, Q
from django.db.models.functions import Now
from django.utils import timezone

logger = logging.getLogger(__name__)

M = TypeVar("M", bound=models.Model)
K = TypeVar("K")


@dataclass(frozen=True)
class LeaseColumns:
    """Where a model keeps its lease: `until`, the expiry (NULL: free), and `owner`, the token
    of the claim holding it (a string column, or an integer one each claim increments when
    `counter`)."""

    until: str = "lease_until"
    owner: str = "lease_token"
    counter: bool = False

    def free(self, now: datetime | None = None) -> Q:
        """Rows nobody holds: no lease, or one that expired."""
        return Q(**{f"{self.until}__isnull": True}) | Q(**{f"{self.until}__lt": _now(now)})

    def expired(self, now: datetime | None = None) -> Q:
        """Rows whose lease was taken and has run out (a worker died or gave up)."""
        return Q(**{f"{self.until}__lt": _now(now)})


def _now(now: datetime | None) -> Any:
    return Now() if now is None else now


def _until(seconds: float, now: datetime | None) -> Any:
    if now is None:
        return ExpressionWrapper(Now() + timedelta(seconds=seconds), output_field=DateTimeField())
    return now + timedelta(seconds=seconds)


class Lease(Generic[M]):
    """A claim on some rows of one model: `rows` as claimed (their token and expiry set), the
    fence (`held`), renewal (`heartbeat`) and release (`release`)."""

    def __init__(
        self,
        model: type[M],
        columns: LeaseColumns,
        rows: list[M],
        seconds: float,
        *,
        db_time: bool,
    ) -> None:
        self.model = model
        self.columns = columns
        self.rows = rows
        self.seconds = seconds
        self.db_time = db_time
        self.renewed_at = time.monotonic()
        self.tokens: dict[Any, Any] = {row.pk: getattr(row, columns.owner) for row in rows}

    @property
    def ids(self) -> list[Any]:
        return list(self.tokens)

    @property
    def token(self) -> Any:
        """The token of the claim (with a counter token, of its single row)."""
        values = set(self.tokens.values())
        if len(values) != 1:
            raise ValueError(f"this lease holds {len(values)} tokens, not one")
        return next(iter(values))

    def held(self, ids: Iterable[Any] | None = None) -> models.QuerySet[M]:
        """The rows (of `ids`, default all) this lease still holds: the fence for every write."""
        wanted = self.tokens if ids is None else {pk: self.tokens[pk] for pk in ids}
        by_token: dict[Any, list[Any]] = {}
        for pk, token in wanted.items():
            by_token.setdefault(token, []).append(pk)
        fence = Q(pk__in=[])
        for token, pks in by_token.items():
            fence |= Q(pk__in=pks, **{self.columns.owner: token})
        return self.model._default_manager.filter(fence)

    def heartbeat(self, *, force: bool = False) -> int:
        """Push the expiry out again once a third of the lease is used (one UPDATE, rarely).
        Returns how many rows were renewed (0: not due yet, or none held any more)."""
        if not force and time.monotonic() - self.renewed_at < self.seconds / 3:
            return 0
        now = None if self.db_time else timezone.now()
        renewed = self.held().update(**{self.columns.until: _until(self.seconds, now)})
        self.renewed_at = time.monotonic()
        return renewed

    def release(
        self, ids: Iterable[Any] | None = None, *, exclude: Q | None = None, **changes: Any
    ) -> int:
        """Clear the lease on the rows still held (of `ids`, default all; minus `exclude`),
        writing `changes` with it (a state, a retry time in the `until` column...)."""
        rows = self.held(ids)
        if exclude is not None:
            rows = rows.exclude(exclude)
        cleared: dict[str, Any] = {self.columns.until: None}
        if not self.columns.counter:
            cleared[self.columns.owner] = ""
        return rows.update(**{**cleared, **changes})


def lease_claim(
    rows: models.QuerySet[M],
    *,
    seconds: float,
    columns: LeaseColumns = LeaseColumns(),
    free: Q | None = None,
    now: datetime | None = None,
    skip_locked: bool = False,
    only: Sequence[str] | None = None,
    changes: Mapping[str, Any] | None = None,
) -> Lease[M]:
    """Claim, for `seconds`, the rows of `rows` that are free (`free`, default
    `columns.free(now)`), writing `changes` with the lease. One short transaction: the rows
    are locked in primary-key order, so concurrent claimers of overlapping rows queue up and
    the later ones find them taken (with `skip_locked`, they skip them at once). `only` loads
    just those fields of the claimed rows (default: all). Returns the lease (maybe empty)."""
    model = rows.model
    query = rows.filter(columns.free(now) if free is None else free)
    if only is not None:
        query = query.only(*{*only, columns.owner})
    with transaction.atomic():
        claimed = list(query.select_for_update(skip_locked=skip_locked).order_by("pk"))
        if claimed:
            token: Any = F(columns.owner) + 1 if columns.counter else uuid.uuid4().hex
            model._default_manager.filter(pk__in=[r.pk for r in claimed]).update(
                **{columns.until: _until(seconds, now), columns.owner: token, **(changes or {})}
            )
    for row in claimed:
        if columns.counter:
            setattr(row, columns.owner, getattr(row, columns.owner) + 1)
        else:
            setattr(row, columns.owner, token)
        if now is not None:
            setattr(row, columns.until, now + timedelta(seconds=seconds))
        for name, value in (changes or {}).items():
            setattr(row, name, value)
    return Lease(model, columns, claimed, float(seconds), db_time=now is None)


@dataclass(frozen=True)
class Sweeper(Generic[K]):
    """Re-queues the rows a worker should have finished: `due(now, limit)` names them (at most
    `limit`, most overdue first: its owner's rule, typically an expired lease or a retry time
    reached), `requeue(keys)` hands them back (sends their tasks, or runs them). `limit`
    defaults to `batch()`. Calling it returns how many rows were re-queued."""

    name: str
    due: Callable[[datetime | None, int], Sequence[K]]
    requeue: Callable[[Sequence[K]], object]
    batch: Callable[[], int]

    def __call__(self, *, now: datetime | None = None, limit: int | None = None) -> int:
        keys = self.due(now, limit or self.batch())
        if keys:
            logger.info("%s sweep: re-driving %d row(s)", self.name, len(keys))
            self.requeue(keys)
        return len(keys)
