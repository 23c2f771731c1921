"""Helpers shared by the Numscript tests (pure: no database)."""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from pathlib import Path

from ledger.numscript import ExecutionResult, StaticStore, parse, run

REPO_ROOT = Path(__file__).resolve().parents[2]


def conformance_dir() -> Path:
    """The upstream conformance suite: $NUMSCRIPT_CONFORMANCE_DIR, else the copy kept in the
    repository (tests/numscript/conformance, MIT, see its README.md and LICENSE) so that a
    fresh clone runs it with nothing beside it."""
    override = os.environ.get("NUMSCRIPT_CONFORMANCE_DIR")
    if override:
        return Path(override)
    return Path(__file__).resolve().parent / "conformance"


def run_script(
    source: str,
    *,
    vars: Mapping[str, str] | None = None,
    balances: Mapping[str, Mapping[str, int]] | None = None,
    metadata: Mapping[str, Mapping[str, str]] | None = None,
    flags: Iterable[str] = (),
) -> ExecutionResult:
    """Run ``source`` against uncolored ``balances`` (account -> {asset: amount})."""
    store = StaticStore(
        {a: {(asset, ""): n for asset, n in rows.items()} for a, rows in (balances or {}).items()},
        metadata or {},
    )
    return run(parse(source), vars=vars or {}, store=store, feature_flags=frozenset(flags))


def postings(result: ExecutionResult) -> list[tuple[str, str, str, int]]:
    return [(p.source, p.destination, p.asset, p.amount) for p in result.postings]
