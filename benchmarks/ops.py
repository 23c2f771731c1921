"""A trivial benchmark that proves the mechanism: database round trips per second."""

import time

from django.db import connection

from ops.bench import benchmark


@benchmark("noop")
def bench_noop(quick: bool) -> dict:
    rounds = 200 if quick else 2000
    started = time.perf_counter()
    with connection.cursor() as cursor:
        for _ in range(rounds):
            cursor.execute("SELECT 1")
            cursor.fetchone()
    seconds = time.perf_counter() - started
    return {
        "queries": rounds,
        "seconds": round(seconds, 4),
        "queries_per_s": round(rounds / seconds),
    }
