"""DRF glue shared by every app: one error shape, `{"code", "message", ...}`."""

from typing import Any

from django.core.exceptions import ValidationError as DjangoValidationError
from django.http import Http404
from rest_framework import exceptions, status
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

from config.errors import ApplicationError


def exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    """Map application and framework errors to JSON with a machine-readable code."""
    if isinstance(exc, ApplicationError):
        return Response(exc.as_dict(), status=exc.http_status)
    if isinstance(exc, DjangoValidationError):
        return Response(
            {"code": "invalid", "message": "; ".join(exc.messages)},
            status=status.HTTP_400_BAD_REQUEST,
        )
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
