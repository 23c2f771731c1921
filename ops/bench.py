"""The benchmark registry.

The benchmarks live in the `benchmarks` package (one module per app, outside the product
packages) and register themselves with `@benchmark("name")`;
`python manage.py bench [NAME ...] [--quick]` discovers them and prints one JSON object per
line: `{"bench": NAME, ...figures}`. Benchmarks run against whatever DATABASE_URL points to.
"""

import signal
import subprocess
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


def process_stop(process: subprocess.Popen[Any], timeout: float = 30.0) -> None:
    """Stop a child process the benchmarks and drills started (a Celery worker, gunicorn):
    SIGTERM, so that it shuts down warm (running tasks finish), then SIGKILL if it is still
    there after `timeout` seconds. Nothing if it has exited already."""
    if process.poll() is not None:
        return
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
