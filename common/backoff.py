"""Exponential backoff, the one formula behind every retry delay of the project."""

from __future__ import annotations


def backoff_delay(attempt: int, *, base: float, cap: float) -> float:
    """Seconds to wait before retry number `attempt` (1-based): base * 2**(attempt-1), capped
    at `cap` (attempts below 1 count as 1)."""
    return float(min(cap, base * 2 ** max(0, attempt - 1)))
