"""`python -m stripe_emulator --port 12111 [--db PATH|:memory:] [--webhook-url URL] ...`"""

from __future__ import annotations

import argparse
import contextlib
import logging
import sys

from .config import ChaosConfig
from .server import CONTROL_ENDPOINTS, EmulatorServer


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m stripe_emulator", description="A stateful local Stripe API emulator."
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=12111, help="0 picks a free port")
    parser.add_argument(
        "--db", default=":memory:", help="SQLite file to keep state in (default: memory)"
    )
    parser.add_argument("--webhook-url", help="endpoint receiving every platform event")
    parser.add_argument("--webhook-secret", help="its whsec_ signing secret")
    parser.add_argument("--connect-webhook-url", help="endpoint for connected-account events")
    parser.add_argument("--connect-webhook-secret", help="its whsec_ signing secret")
    parser.add_argument(
        "--available-delay",
        type=int,
        default=0,
        help="seconds before charge/top-up funds become available (default 0: at once)",
    )
    parser.add_argument(
        "--capture-delay",
        type=float,
        default=0.0,
        help="seconds after an asynchronous capture before the charge's balance transaction"
        " is attached and charge.updated sent (default 0: right after the request)",
    )
    parser.add_argument(
        "--idempotency-retention",
        type=int,
        default=24 * 3600,
        help="seconds an idempotency key is remembered (default 86400, as on Stripe)",
    )
    parser.add_argument("--webhook-max-attempts", type=int, default=5)
    parser.add_argument(
        "--webhook-backoff", type=float, default=0.05, help="first retry delay, doubled each time"
    )
    parser.add_argument("--webhook-timeout", type=float, default=5.0)
    parser.add_argument(
        "--webhook-threads",
        type=int,
        default=4,
        help="threads delivering webhooks (default 4; 1 delivers in order, one at a time;"
        " Stripe itself guarantees no order)",
    )
    parser.add_argument("--verbose", action="store_true", help="log every request")
    chaos = parser.add_argument_group("chaos")
    chaos.add_argument("--chaos-seed", type=int, default=0)
    chaos.add_argument("--chaos-duplicate-rate", type=float, default=0.0)
    chaos.add_argument("--chaos-max-duplicates", type=int, default=2)
    chaos.add_argument("--chaos-shuffle", action="store_true")
    chaos.add_argument("--chaos-shuffle-window", type=int, default=10)
    chaos.add_argument("--chaos-delay-ms", type=int, default=0)
    chaos.add_argument("--chaos-drop-rate", type=float, default=0.0)
    chaos.add_argument("--chaos-api-error-rate", type=float, default=0.0)
    chaos.add_argument("--chaos-api-timeout-rate", type=float, default=0.0)
    chaos.add_argument("--chaos-api-timeout-seconds", type=float, default=1.0)
    chaos.add_argument("--chaos-api-error-after-rate", type=float, default=0.0)
    chaos.add_argument(
        "--chaos-api-rate-limit-rate",
        type=float,
        default=0.0,
        help="share of API calls answered 429 with Stripe-Should-Retry: true",
    )
    chaos.add_argument(
        "--chaos-api-paths", default="", help="comma-separated path prefixes chaos applies to"
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    if args.webhook_threads < 1:
        print("stripe_emulator: --webhook-threads must be at least 1", file=sys.stderr)
        return 2
    try:
        chaos = ChaosConfig(
            seed=args.chaos_seed,
            duplicate_rate=args.chaos_duplicate_rate,
            max_duplicates=args.chaos_max_duplicates,
            shuffle=args.chaos_shuffle,
            shuffle_window=args.chaos_shuffle_window,
            delay_ms=args.chaos_delay_ms,
            drop_rate=args.chaos_drop_rate,
            api_error_rate=args.chaos_api_error_rate,
            api_timeout_rate=args.chaos_api_timeout_rate,
            api_timeout_seconds=args.chaos_api_timeout_seconds,
            api_error_after_rate=args.chaos_api_error_after_rate,
            api_rate_limit_rate=args.chaos_api_rate_limit_rate,
            api_paths=tuple(p for p in args.chaos_api_paths.split(",") if p),
        )
    except ValueError as exc:
        print(f"stripe_emulator: {exc}", file=sys.stderr)
        return 2
    server = EmulatorServer(
        args.port,
        host=args.host,
        webhook_url=args.webhook_url,
        webhook_secret=args.webhook_secret,
        connect_webhook_url=args.connect_webhook_url,
        connect_webhook_secret=args.connect_webhook_secret,
        chaos=chaos,
        db_path=args.db,
        available_delay_seconds=args.available_delay,
        capture_delay_seconds=args.capture_delay,
        idempotency_retention_seconds=args.idempotency_retention,
        webhook_max_attempts=args.webhook_max_attempts,
        webhook_retry_backoff_seconds=args.webhook_backoff,
        webhook_timeout_seconds=args.webhook_timeout,
        webhook_threads=args.webhook_threads,
        verbose=args.verbose,
    )
    try:
        server.start()
    except OSError as exc:
        print(f"stripe_emulator: cannot listen on {args.host}:{args.port}: {exc}", file=sys.stderr)
        return 1
    print(f"stripe emulator listening on {server.url} (db: {args.db})", flush=True)
    for route, what in CONTROL_ENDPOINTS.items():
        print(f"  {route:40} {what}", flush=True)
    with contextlib.suppress(KeyboardInterrupt):
        server.serve_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main())
