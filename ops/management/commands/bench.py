"""`python manage.py bench [NAME ...] [--quick]`: run benchmarks, one JSON line each."""

import json
import time

from django.core.management.base import BaseCommand, CommandError
from django.db import connection

from ops.bench import registry


class Command(BaseCommand):
    help = "Run the registered benchmarks and print one JSON object per line."

    def add_arguments(self, parser):
        parser.add_argument("names", nargs="*", help="benchmarks to run (default: all)")
        parser.add_argument("--quick", action="store_true", help="small sizes, under a minute")
        parser.add_argument("--list", action="store_true", help="list the benchmark names")

    def handle(self, *args, names, quick, list, **options):
        available = registry()
        if list:
            for name in sorted(available):
                self.stdout.write(name)
            return
        unknown = sorted(set(names) - set(available))
        if unknown:
            raise CommandError(
                f"unknown benchmark(s): {', '.join(unknown)}; known: {', '.join(sorted(available))}"
            )
        failed = False
        for name in names or sorted(available):
            started = time.perf_counter()
            try:
                figures = available[name](quick=quick)
            except Exception as exc:  # report and go on with the next benchmark
                failed = True
                figures = {"error": f"{exc.__class__.__name__}: {exc}"}
            line = {"bench": name, "database": connection.vendor, "quick": quick, **figures}
            line["wall_s"] = round(time.perf_counter() - started, 3)
            self.stdout.write(json.dumps(line))
        if failed:
            raise CommandError("a benchmark failed")
