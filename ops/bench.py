"""The benchmark registry.

Each app registers its benchmarks in a `benchmarks.py` module with `@benchmark("name")`;
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
    from django.utils.module_loading import autodiscover_modules

    autodiscover_modules("benchmarks")
    return dict(_REGISTRY)
