"""Structured logs: one JSON object per line in production (`LOG_FORMAT=json`).

Each line carries the ids of what is being worked on, from a context variable filled by
`ops.middleware.RequestContextMiddleware` (request id) and the Celery signal handlers in
`ops.apps` (task id, and the Stripe event / order / payout / run id in the task's arguments),
or by `log_context(...)` around a piece of work. `RedactingFilter` scrubs secrets and card
numbers from every message and argument before any handler formats them.
"""

import contextvars
import logging
import re
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from pythonjsonlogger.json import JsonFormatter as _JsonFormatter

_context: contextvars.ContextVar[dict[str, Any]] = contextvars.ContextVar(
    "eats_log_context",
    default={},  # noqa: B039 (never mutated: replaced on every change)
)

# The ids a line may carry, in the order they are printed.
CONTEXT_KEYS = (
    "request_id",
    "task_id",
    "task",
    "stripe_event_id",
    "order_id",
    "payout_id",
    "refund_id",
    "run_id",
)


def context_get() -> dict[str, Any]:
    return _context.get()


def context_bind(**values: Any) -> contextvars.Token:
    return _context.set({**_context.get(), **{k: v for k, v in values.items() if v is not None}})


def context_reset(token: contextvars.Token) -> None:
    _context.reset(token)


def context_clear() -> None:
    _context.set({})


@contextmanager
def log_context(**values: Any) -> Iterator[None]:
    """Every log line inside the block carries these ids."""
    token = context_bind(**values)
    try:
        yield
    finally:
        _context.reset(token)


class ContextFilter(logging.Filter):
    """Copies the bound ids onto each record (as attributes, so the JSON formatter prints
    them as keys and the plain formatter can ignore them)."""

    def filter(self, record: logging.LogRecord) -> bool:
        for key, value in _context.get().items():
            if not hasattr(record, key):
                setattr(record, key, value)
        return True


# Secrets and card data that must never reach a log line: Stripe keys and webhook secrets,
# bearer/API tokens, passwords in URLs, and PANs (13-19 digits, optionally spaced/dashed).
_REDACTIONS: list[tuple[re.Pattern[str], str]] = [
    (re.compile(r"\b(sk|rk|pk)_(live|test)_[A-Za-z0-9]+"), r"\1_\2_[REDACTED]"),
    (re.compile(r"\bwhsec_[A-Za-z0-9]+"), "whsec_[REDACTED]"),
    (re.compile(r"(?i)\b(bearer|token)\s+[A-Za-z0-9._~+/=-]{8,}"), r"\1 [REDACTED]"),
    (
        re.compile(
            r"(?i)(password|passwd|secret|api_key|apikey)(['\"]?\s*[:=]\s*['\"]?)[^\s'\",&}]+"
        ),
        r"\1\2[REDACTED]",
    ),
    (re.compile(r"(://[^:/@\s]+:)[^@\s]+@"), r"\1[REDACTED]@"),
]
# A PAN: 13-19 digits, optionally grouped by spaces or dashes, passing the Luhn check (so a
# timing like "0.0123456789012345s" or an id is left alone), not the fraction of a number.
_PAN = re.compile(r"(?<![\d.])(?:\d[ -]?){12,18}\d(?![\d])")


def _luhn_ok(digits: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = int(ch)
        if i % 2:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


def _pan(match: re.Match[str]) -> str:
    digits = re.sub(r"[ -]", "", match.group())
    return "[CARD REDACTED]" if _luhn_ok(digits) else match.group()


def redact(text: str) -> str:
    for pattern, replacement in _REDACTIONS:
        text = pattern.sub(replacement, text)
    return _PAN.sub(_pan, text)


class RedactingFilter(logging.Filter):
    """Formats the message once, scrubbed; the exception text is scrubbed by the formatters
    below (it is rendered later)."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a bad format string: keep the record, show it raw
            message = str(record.msg)
        record.msg, record.args = redact(message), None
        return True


class JsonFormatter(_JsonFormatter):
    def formatException(self, ei) -> str:  # type: ignore[no-untyped-def]
        return redact(str(super().formatException(ei)))


class PlainFormatter(logging.Formatter):
    def formatException(self, ei) -> str:  # type: ignore[no-untyped-def]
        return redact(super().formatException(ei))
