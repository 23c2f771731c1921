"""Chaos switches of the emulator: how webhook delivery and the API misbehave on purpose.

All randomness comes from RNGs seeded with `seed` (one for the API, one for webhooks), so
a run with the same seed and the same sequence of calls makes the same decisions.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

_RATES = (
    "api_rate_limit_rate",
    "duplicate_rate",
    "drop_rate",
    "api_error_rate",
    "api_timeout_rate",
    "api_error_after_rate",
)


@dataclasses.dataclass
class ChaosConfig:
    """Fault injection. Every switch is off by default.

    Webhooks:
      duplicate_rate: share of events delivered more than once (1..max_duplicates extra copies).
      shuffle: deliver in random order within a window of `shuffle_window` ready events;
        the dispatcher holds events up to `shuffle_hold_ms` to fill the window.
      delay_ms: every delivery attempt waits this long after the event is created.
      drop_rate: share of events whose first delivery is silently dropped; they are kept
        aside until `redeliver_dropped()` (or `POST /_emulator/redeliver_dropped`).
    API (only for paths starting with one of `api_paths`, all /v1 paths when empty, and
    methods in `api_methods`):
      api_error_rate: answer 500 api_error BEFORE doing anything (nothing is saved).
      api_timeout_rate: sleep `api_timeout_seconds` (longer than the client's timeout),
        THEN perform the operation: the client sees a timeout although the object exists.
      api_rate_limit_rate: answer 429 rate_limit_error with `Stripe-Should-Retry: true` BEFORE
      doing anything (nothing is saved under the idempotency key): the client retries.
    api_error_after_rate: perform the operation, then answer 500 (only when it succeeded;
        a refused request keeps its real error). As on Stripe, that 500 is saved under the
        idempotency key and replayed to retries with the same key.
    """

    seed: int = 0
    duplicate_rate: float = 0.0
    max_duplicates: int = 2
    shuffle: bool = False
    shuffle_window: int = 10
    shuffle_hold_ms: int = 30
    delay_ms: int = 0
    drop_rate: float = 0.0
    api_error_rate: float = 0.0
    api_timeout_rate: float = 0.0
    api_timeout_seconds: float = 1.0
    api_error_after_rate: float = 0.0
    api_rate_limit_rate: float = 0.0
    api_paths: tuple[str, ...] = ()
    api_methods: tuple[str, ...] = ("GET", "POST", "DELETE")

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        for name in _RATES:
            value = getattr(self, name)
            if not 0.0 <= float(value) <= 1.0:
                raise ValueError(f"{name} must be between 0 and 1, got {value!r}")
        if (
            self.api_error_rate
            + self.api_timeout_rate
            + self.api_error_after_rate
            + self.api_rate_limit_rate
            > 1.0
        ):
            raise ValueError("the api_* rates must sum to at most 1")
        if self.max_duplicates < 1:
            raise ValueError("max_duplicates must be at least 1")
        if self.shuffle_window < 1:
            raise ValueError("shuffle_window must be at least 1")
        if self.delay_ms < 0 or self.shuffle_hold_ms < 0 or self.api_timeout_seconds < 0:
            raise ValueError("delays must not be negative")

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["api_paths"] = list(self.api_paths)
        data["api_methods"] = list(self.api_methods)
        return data

    def updated(self, changes: Mapping[str, Any]) -> ChaosConfig:
        """A copy with `changes` applied; values may be strings (from forms or the CLI)."""
        fields = {f.name: f for f in dataclasses.fields(self)}
        values = dataclasses.asdict(self)
        for name, raw in changes.items():
            if name not in fields:
                raise ValueError(f"unknown chaos switch: {name}")
            current = values[name]
            values[name] = _coerce(name, raw, current)
        return ChaosConfig(**values)

    def api_applies(self, method: str, path: str) -> bool:
        if method not in self.api_methods:
            return False
        return not self.api_paths or any(path.startswith(p) for p in self.api_paths)


def _coerce(name: str, raw: Any, current: Any) -> Any:
    if isinstance(current, bool):
        if isinstance(raw, bool):
            return raw
        text = str(raw).strip().lower()
        if text in ("1", "true", "yes", "on"):
            return True
        if text in ("0", "false", "no", "off", ""):
            return False
        raise ValueError(f"{name} must be a boolean, got {raw!r}")
    if isinstance(current, int):
        return int(raw)
    if isinstance(current, float):
        return float(raw)
    if isinstance(current, tuple):
        if isinstance(raw, str):
            return tuple(p for p in (s.strip() for s in raw.split(",")) if p)
        return tuple(str(x) for x in raw)
    return raw
