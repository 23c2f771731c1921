"""The benchmark registry.

The benchmarks live in the `benchmarks` package (one module per app, outside the product
packages) and register themselves with `@benchmark("name")`;
`python manage.py bench [NAME ...] [--quick]` discovers them and prints one JSON object per
line: `{"bench": NAME, ...figures}`. Benchmarks run against whatever DATABASE_URL points to.
"""

from collections.abc import Callable
from typing import Any

BenchFn = Callable[..., dict[str, Any]]
_REGISTRY: dict[str, BenchFn] = {}


def benchmark(name: str) -> Callable[[BenchFn], BenchFn]:
    """Register `fn(quick: bool) -> dict of figures` under `name`."""

    def register(fn: BenchFn) -> BenchFn:
        if name in _REGISTRY and _REGISTRY[name] is not fn:
            raise ValueError(f"benchmark {name!r} is registered twice")
        _REGISTRY[name] = fn
        return fn

    return register


def registry() -> dict[str, BenchFn]:
    import importlib
    import pkgutil

    import benchmarks

    for module in pkgutil.iter_modules(benchmarks.__path__):
        importlib.import_module(f"benchmarks.{module.name}")
    return dict(_REGISTRY)
