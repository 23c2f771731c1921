"""Micro-benchmark of the interpreter on the marketplace split script (pure, no database).

``bench_interpreter(quick)`` returns medians in microseconds: ``parse_us`` (uncached parse)
and ``run_us`` (a run of the cached program against a :class:`StaticStore`), and
:func:`bench_oneof`'s figures: ``oneof_<N>_cpu_ms`` for 10 to 10,000 branches where only the
last can pay, and ``oneof_growth_<N>_to_<10N>`` (about 10 when the rollback is linear).
"""

from __future__ import annotations

import os
import statistics
import time
from collections.abc import Callable

from .ast import Program
from .interpreter import run
from .limits import Limits
from .parser import parse, parse_uncached
from .store import StaticStore

SPLIT_SCRIPT = """\
vars {
  account $order
  account $restaurant
  account $rider
  monetary $delivery_fee
  portion $commission = meta($restaurant, "commission")
}
send $delivery_fee ( source = $order destination = $rider )
send [USD/2 *] (
  source = $order
  destination = {
    $commission to @platform:fees
    remaining to $restaurant
  }
)
"""

SPLIT_VARS = {
    "order": "orders:1042",
    "restaurant": "restaurants:17",
    "rider": "riders:9",
    "delivery_fee": "USD/2 499",
}


def split_store() -> StaticStore:
    return StaticStore(
        balances={"orders:1042": {("USD/2", ""): 4_287}},
        metadata={"restaurants:17": {"commission": "15%"}},
    )


def _median_us(
    fn: object, rounds: int, inner: int, clock: Callable[[], float] = time.perf_counter
) -> float:
    assert callable(fn)
    samples = []
    for _ in range(rounds):
        start = clock()
        for _ in range(inner):
            fn()
        samples.append((clock() - start) / inner * 1e6)
    return round(statistics.median(samples), 2)


def bench_interpreter(quick: bool) -> dict[str, float | int]:
    """Median µs to parse the split script (uncached) and to run it (cached program)."""
    rounds, inner = (5, 50) if quick else (25, 200)
    store = split_store()
    program = parse(SPLIT_SCRIPT)
    result = run(program, vars=SPLIT_VARS, store=store)
    assert len(result.postings) == 3, result.postings  # the benchmark must measure a real run

    def parse_once() -> None:
        parse_uncached(SPLIT_SCRIPT)

    def run_once() -> None:
        run(parse(SPLIT_SCRIPT), vars=SPLIT_VARS, store=store)

    parse_once()
    run_once()
    return {
        "parse_us": _median_us(parse_once, rounds, inner),
        "run_us": _median_us(run_once, rounds, inner),
        "rounds": rounds,
        "iterations": rounds * inner,
        **bench_oneof(quick),
    }


ONEOF_SIZES = (10, 100, 1_000, 10_000)
#: the default limits refuse a 10,000-branch oneof (1,000 at most): lift them to measure it
ONEOF_LIMITS = Limits(
    max_script_bytes=1 << 20, max_sources=20_000, max_branches=20_000, max_steps=1_000_000
)


def oneof_script(branches: int) -> str:
    """``send`` from a ``oneof`` of ``branches`` accounts where only the last one can pay:
    every earlier branch is tried and rolled back (the worst case for the rollback)."""
    accounts = "\n".join(f"    @users:{i}" for i in range(branches))
    return (
        '#![feature("experimental-oneof")]\n'
        f"send [USD/2 100] (\n  source = oneof {{\n{accounts}\n  }}\n  destination = @shop\n)\n"
    )


def _runner(program: Program, store: StaticStore) -> Callable[[], object]:
    return lambda: run(program, store=store, limits=ONEOF_LIMITS)


def bench_oneof(quick: bool, sizes: tuple[int, ...] = ONEOF_SIZES) -> dict[str, float]:
    """Median CPU ms (process time: the machine is shared, wall time would measure the
    neighbours) to run a ``oneof`` of N branches, parse excluded, for each N in ``sizes``, and
    the growth between consecutive sizes (10x branches: ~10x is linear, ~100x quadratic).
    The store answers 50 for every branch but the last, which holds 100. ``load_1m`` is the
    machine's load average when the measure ends."""
    out: dict[str, float] = {}
    previous: tuple[int, float] | None = None
    for size in sizes:
        program = parse_uncached(oneof_script(size), ONEOF_LIMITS)
        balances: dict[str, dict[tuple[str, str] | str, int]] = {
            f"users:{i}": {("USD/2", ""): 50} for i in range(size - 1)
        }
        balances[f"users:{size - 1}"] = {("USD/2", ""): 100}
        store = StaticStore(balances=balances)
        result = run(program, store=store, limits=ONEOF_LIMITS)
        assert [p.source for p in result.postings] == [f"users:{size - 1}"], result.postings
        rounds = 3 if quick or size >= 10_000 else 7
        inner = max(2, 20_000 // size)
        ms = _median_us(_runner(program, store), rounds, inner, time.process_time) / 1000
        out[f"oneof_{size}_cpu_ms"] = round(ms, 3)
        if previous is not None:
            out[f"oneof_growth_{previous[0]}_to_{size}"] = round(ms / previous[1], 1)
        previous = (size, ms)
    out["load_1m"] = round(os.getloadavg()[0], 2)
    return out
