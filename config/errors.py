"""The root of every application error.

Each app defines its own subclasses; APIs turn them into a 400-class JSON answer
`{"code": ..., "message": ..., **extra}` and commands into a one-line message.
"""

from typing import Any


class ApplicationError(Exception):
    """A business error the caller can act on. Never a 500."""

    code = "application_error"
    http_status = 400

    def __init__(
        self, message: str, *, code: str | None = None, extra: dict[str, Any] | None = None
    ):
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
        self.extra = extra or {}

    def as_dict(self) -> dict[str, Any]:
        return {"code": self.code, "message": self.message, **self.extra}
