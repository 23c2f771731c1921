"""The benchmarks (`make bench`, `python manage.py bench NAME [--quick]`), one module per app.

Outside the product packages: they may drive the Stripe emulator, patch the gateway or start
worker processes, and no product code imports them (the import contracts enforce it). Each
module registers its benchmarks with `ops.bench.benchmark`; `ops.bench.registry()` imports
every module of this package.
"""
