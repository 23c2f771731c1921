"""Micro-benchmark of the interpreter on the marketplace split script (pure, no database).

``bench_interpreter(quick)`` returns medians in microseconds: ``parse_us`` (uncached parse)
and ``run_us`` (a run of the cached program against a :class:`StaticStore`).
"""

from __future__ import annotations

import statistics
import time

from .interpreter import run
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


def _median_us(fn: object, rounds: int, inner: int) -> float:
    assert callable(fn)
    samples = []
    for _ in range(rounds):
        start = time.perf_counter()
        for _ in range(inner):
            fn()
        samples.append((time.perf_counter() - start) / inner * 1e6)
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
    }
