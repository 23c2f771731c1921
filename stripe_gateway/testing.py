"""Test helpers for code that uses the Stripe seam. Imported by tests only.

`stripe_calls_forbidden_in_atomic()` patches `StripeGateway._call` (the one wrapper every
Stripe HTTP call goes through) so that a call made while the code holds an open
`transaction.atomic()` raises `StripeCallInTransaction` and is recorded, even if the code
under test swallows the exception. pytest-django's own wrapping transaction is not counted
(see `stripe_gateway.client.open_atomic_depth`). Enable it for a test tree with an autouse
fixture (`tests/marketplace/conftest.py` does) and fail the test on any recorded violation.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from stripe_gateway.client import StripeGateway, open_atomic_depth
from stripe_gateway.errors import StripeCallInTransaction


@contextmanager
def stripe_calls_forbidden_in_atomic() -> Iterator[list[str]]:
    """Yield the list of violations ("operation at depth N") seen while active."""
    violations: list[str] = []
    original = StripeGateway._call

    def guarded(self: StripeGateway, operation: str, *args: Any, **kwargs: Any) -> Any:
        depth = open_atomic_depth()
        if depth:
            violations.append(f"{operation} inside {depth} open atomic block(s)")
            raise StripeCallInTransaction(
                f"Stripe call {operation} inside an open database transaction"
            )
        return original(self, operation, *args, **kwargs)

    StripeGateway._call = guarded  # type: ignore[method-assign]
    try:
        yield violations
    finally:
        StripeGateway._call = original  # type: ignore[method-assign]
