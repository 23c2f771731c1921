"""Where the current action comes from (request id, client IP, channel), kept in a context
variable by `audit.middleware.AuditContextMiddleware` for web requests, or set with
`audit_context(...)` by commands and tasks, so services record it without being handed the
request."""

from __future__ import annotations

import contextvars
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass


@dataclass(frozen=True)
class Origin:
    request_id: str = ""
    ip: str | None = None
    via: str = "internal"


_NOWHERE = Origin()
_origin: contextvars.ContextVar[Origin | None] = contextvars.ContextVar(
    "audit_origin", default=None
)


def origin_get() -> Origin:
    return _origin.get() or _NOWHERE


@contextmanager
def audit_context(*, request_id: str = "", ip: str | None = None, via: str) -> Iterator[Origin]:
    origin = Origin(request_id=request_id[:64], ip=ip, via=via[:16])
    token = _origin.set(origin)
    try:
        yield origin
    finally:
        _origin.reset(token)
