"""Stripe-shaped API errors raised by the emulator's handlers.

An `ApiError` carries everything needed to render Stripe's error JSON
(`{"error": {"type", "code", "message", "param", "doc_url"}}`) and the HTTP status the
real API uses for it. `store` says whether the idempotency layer may save the answer:
Stripe saves the result of a request once the endpoint began executing (card declines,
insufficient balance...) but not parameter-validation failures, which can be retried.
"""

from __future__ import annotations

from typing import Any

DOC_BASE = "https://stripe.com/docs/error-codes/"


class ApiError(Exception):
    """An error answer of the emulated API."""

    def __init__(
        self,
        status: int,
        type_: str,
        message: str,
        *,
        code: str | None = None,
        param: str | None = None,
        store: bool = True,
        extra: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.type = type_
        self.message = message
        self.code = code
        self.param = param
        self.store = store
        self.extra = extra or {}
        self.headers = headers or {}

    def body(self) -> dict[str, Any]:
        error: dict[str, Any] = {"type": self.type, "message": self.message}
        if self.code is not None:
            error["code"] = self.code
            error["doc_url"] = DOC_BASE + self.code.replace("_", "-")
        if self.param is not None:
            error["param"] = self.param
        error.update(self.extra)
        return {"error": error}


def invalid(
    message: str,
    *,
    param: str | None = None,
    code: str | None = None,
    store: bool = True,
) -> ApiError:
    """400 invalid_request_error raised while executing (saved by idempotency)."""
    return ApiError(400, "invalid_request_error", message, code=code, param=param, store=store)


def bad_param(message: str, *, param: str | None, code: str = "parameter_invalid") -> ApiError:
    """400 for a request that failed validation (never saved by idempotency)."""
    return ApiError(400, "invalid_request_error", message, code=code, param=param, store=False)


def missing_param(param: str) -> ApiError:
    return ApiError(
        400,
        "invalid_request_error",
        f"Missing required param: {param}.",
        code="parameter_missing",
        param=param,
        store=False,
    )


def no_such(kind_label: str, object_id: str, *, param: str = "id") -> ApiError:
    """404 resource_missing, worded like Stripe ("No such charge: 'ch_123'")."""
    return ApiError(
        404,
        "invalid_request_error",
        f"No such {kind_label}: '{object_id}'",
        code="resource_missing",
        param=param,
        store=False,
    )


def api_error(message: str = "An unknown error occurred.") -> ApiError:
    return ApiError(500, "api_error", message, store=False)
