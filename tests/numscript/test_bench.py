"""The micro-benchmark helper returns its figures (timing itself is not asserted)."""

from __future__ import annotations

from ledger.numscript.bench import bench_interpreter


def test_bench_interpreter_quick_returns_medians() -> None:
    figures = bench_interpreter(quick=True)
    assert set(figures) >= {"parse_us", "run_us"}
    assert figures["parse_us"] > 0
    assert figures["run_us"] > 0
