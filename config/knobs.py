"""Tuning knobs: each app declares its own in its `conf.py` (name, default, kind, meaning);
`config/settings.py` reads every one of them once, from the environment, with `knobs_read`.

A knob's environment variable is its name. Kinds: int, float, bool, str, and json (for a
value that may be a mapping, e.g. `PAYOUTS_MIN_AMOUNT={"USD/2": 1000, "*": 500}`).
`.env.example` lists every knob (tests/ops/test_knobs.py checks it)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

Kind = Literal["int", "float", "bool", "str", "json"]


@dataclass(frozen=True)
class Knob:
    default: Any
    kind: Kind
    doc: str


def knobs_read(env: Any, knobs: Mapping[str, Knob]) -> dict[str, Any]:
    """{name: value from the environment, else the default} (`env` is an `environ.Env`)."""
    return {
        name: getattr(env, knob.kind)(name, default=knob.default) for name, knob in knobs.items()
    }


def knobs_defaults(knobs: Mapping[str, Knob]) -> dict[str, Any]:
    return {name: knob.default for name, knob in knobs.items()}
