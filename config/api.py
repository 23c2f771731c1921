"""DRF glue shared by every app: one error shape, `{"code", "message", ...}`.

Bad input is refused before the database in one place, config.input (middleware, parsers,
query parameter helpers); `exception_handler` here is the last resort for an IntegrityError
or DataError that slipped past validation: a 409 or 400 naming the constraint and what it
means, logged at ERROR (each one is a bug to fix in a serializer), never a 500.
"""

from __future__ import annotations

import logging
from typing import Any

from django.core.exceptions import SuspiciousOperation
from django.core.exceptions import ValidationError as DjangoValidationError
from django.db import DataError, IntegrityError
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from rest_framework import exceptions, status
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

from config.errors import ApplicationError

logger = logging.getLogger("config.api")


# --- errors -----------------------------------------------------------------------------------


def exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    """Map application and framework errors to JSON with a machine-readable code."""
    if isinstance(exc, ApplicationError):
        return Response(exc.as_dict(), status=exc.http_status)
    if isinstance(exc, DjangoValidationError):
        return Response(
            {"code": "invalid", "message": "; ".join(exc.messages)},
            status=status.HTTP_400_BAD_REQUEST,
        )
    if isinstance(exc, SuspiciousOperation):
        # Too many form fields, a body too big: Django would answer an HTML 400.
        return Response(
            {"code": "bad_request", "message": str(exc) or "Bad request."},
            status=status.HTTP_400_BAD_REQUEST,
        )
    if isinstance(exc, IntegrityError | DataError):
        return _database_refused(exc, context)
    response = drf_exception_handler(exc, context)
    if response is None:
        return None
    if isinstance(exc, exceptions.ValidationError):
        response.data = {"code": "invalid", "message": "Invalid input.", "errors": response.data}
    elif isinstance(exc, Http404 | exceptions.NotFound):
        response.data = {"code": "not_found", "message": "Not found."}
    elif isinstance(exc, exceptions.APIException):
        detail = exc.detail if isinstance(exc.detail, str) else str(exc.detail)
        response.data = {
            "code": exc.get_codes() if isinstance(exc.get_codes(), str) else exc.default_code,
            "message": detail,
        }
    return response


# SQLSTATE classes: 23 integrity (23505 unique, 23503 foreign key, 23514 check, 23502 not
# null), 22 data exception (out of range, too long, invalid text).
_CONFLICTS = {"23505": "unique_violation", "23503": "foreign_key_violation"}


def _database_refused(exc: IntegrityError | DataError, context: dict[str, Any]) -> Response:
    """The last line: the database refused what validation let through. A 409 for a conflict
    with existing rows (unique, foreign key), a 400 otherwise, never a 500; logged loudly."""
    cause = exc.__cause__
    diag = getattr(cause, "diag", None)
    sqlstate = getattr(cause, "sqlstate", None) or ""
    constraint = getattr(diag, "constraint_name", None) or ""
    view = context.get("view")
    logger.error(
        "the database refused input that validation accepted (a validation bug): %s %s "
        "sqlstate=%s constraint=%s: %s",
        type(view).__name__,
        getattr(context.get("request"), "method", ""),
        sqlstate,
        constraint,
        exc,
        exc_info=exc,
    )
    http_status: int
    if sqlstate in _CONFLICTS:
        code, http_status = "conflict", status.HTTP_409_CONFLICT
        message = "The request conflicts with existing data"
    elif isinstance(exc, IntegrityError):
        code, http_status = "constraint_violated", status.HTTP_400_BAD_REQUEST
        message = "The request breaks a rule of the data"
    else:
        code, http_status = "invalid_value", status.HTTP_400_BAD_REQUEST
        message = "A value cannot be stored"
    meaning = constraint_meaning(constraint)
    if constraint:
        message += f" ({constraint}: {meaning})" if meaning else f" ({constraint})"
    elif diag is not None and getattr(diag, "message_primary", None):
        message += f": {diag.message_primary}"
    body: dict[str, Any] = {"code": code, "message": message + "."}
    if constraint:
        body["constraint"] = constraint
    return Response(body, status=http_status)


def constraint_meaning(name: str) -> str:
    """A readable statement of the model constraint called `name` ('' if unknown)."""
    if not name:
        return ""
    from django.apps import apps
    from django.db.models import CheckConstraint, Q, UniqueConstraint

    def describe(node: Any) -> str:
        if isinstance(node, Q):
            joined = f" {node.connector.lower()} ".join(describe(c) for c in node.children)
            text = f"({joined})" if len(node.children) > 1 else joined
            return f"not {text}" if node.negated else text
        if isinstance(node, tuple) and len(node) == 2:
            lookup, value = node
            field, _, op = str(lookup).partition("__")
            ops = {"": "=", "gt": ">", "gte": ">=", "lt": "<", "lte": "<=", "in": "in"}
            if op == "regex":
                return f"{field} matches {value}"
            if op == "isnull":
                return f"{field} is {'' if value else 'not '}null"
            if op == "startswith":
                return f"{field} starts with {value!r}"
            return f"{field} {ops.get(op, op)} {value!r}"
        return str(node)

    for model in apps.get_models():
        for constraint in model._meta.constraints:
            if constraint.name != name:
                continue
            label = model._meta.label
            if isinstance(constraint, CheckConstraint):
                return f"{label} requires {describe(constraint.condition)}"
            if isinstance(constraint, UniqueConstraint):
                return f"{label} already has a row with this {', '.join(constraint.fields)}"
    return ""


# --- Django's own error pages, for the API's paths (config.urls handler400/404/500) ----------


def _api_or_default(request: HttpRequest, body: dict[str, str], status_code: int) -> Any:
    return request.path.startswith("/api/") and JsonResponse(body, status=status_code)


def bad_request(request: HttpRequest, exception: Exception) -> HttpResponse:
    """A 400 Django raised before a view (a suspicious request): JSON on the API."""
    from django.views import defaults

    return _api_or_default(
        request, {"code": "bad_request", "message": "Bad request."}, 400
    ) or defaults.bad_request(request, exception)


def not_found(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    """No URL matched (e.g. a non-numeric id where an integer is expected): JSON on the API."""
    from django.views import defaults

    return _api_or_default(
        request, {"code": "not_found", "message": "Not found."}, 404
    ) or defaults.page_not_found(request, exception)


def server_error(request: HttpRequest) -> HttpResponse:
    """Still a bug to fix, but in the API's error shape."""
    from django.views import defaults

    return _api_or_default(
        request, {"code": "server_error", "message": "Internal server error."}, 500
    ) or defaults.server_error(request)
