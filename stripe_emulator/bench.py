"""Throughput benchmark through the real stripe client: `python -m stripe_emulator.bench`.

Creates N transfers (each one also makes balance transactions and an event), then lists the
platform's balance-transaction window with auto-pagination (`limit=100`, optionally with
`expand[]=data.source`). Prints one JSON object. Not a timed test.
"""

from __future__ import annotations

import argparse
import json
import time
from typing import Any

from .server import EmulatorServer


def run(transfers: int, *, expand: bool, db_path: str | None) -> dict[str, Any]:
    import stripe  # the bench drives the real client; the emulator itself does not need it

    server = EmulatorServer(port=0, db_path=db_path).start()
    try:
        client = stripe.StripeClient(
            "sk_test_bench",
            base_addresses={"api": server.url},
            max_network_retries=0,
            http_client=stripe.RequestsClient(timeout=30),
        )
        client.v1.topups.create(params={"amount": 10 * transfers + 1000, "currency": "usd"})
        account = client.v1.accounts.create(params={"type": "express"})
        window_start = server.state.now()

        started = time.perf_counter()
        for i in range(transfers):
            client.v1.transfers.create(
                params={
                    "amount": 10,
                    "currency": "usd",
                    "destination": account.id,
                    "metadata": {"payout_id": f"bench-{i}"},
                },
                options={"idempotency_key": f"bench-transfer-{i}"},
            )
        create_seconds = time.perf_counter() - started

        params: Any = {"limit": 100, "created": {"gte": window_start}}
        if expand:
            params["expand"] = ["data.source"]
        started = time.perf_counter()
        listed = sum(
            1 for _ in client.v1.balance_transactions.list(params=params).auto_paging_iter()
        )
        list_seconds = time.perf_counter() - started

        started = time.perf_counter()
        by_destination = sum(
            1
            for _ in client.v1.transfers.list(
                params={"limit": 100, "destination": account.id}
            ).auto_paging_iter()
        )
        transfer_list_seconds = time.perf_counter() - started
        return {
            "transfers_created": transfers,
            "transfer_create_seconds": round(create_seconds, 2),
            "transfers_per_second": round(transfers / create_seconds, 1)
            if create_seconds
            else None,
            "balance_transactions_listed": listed,
            "balance_transaction_list_seconds": round(list_seconds, 2),
            "expand_data_source": expand,
            "transfers_listed_by_destination": by_destination,
            "transfer_list_seconds": round(transfer_list_seconds, 2),
            "exactly_one_transfer_per_payout": set(server.transfer_counts().values()) == {1},
            "db": db_path or ":memory:",
        }
    finally:
        server.stop()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m stripe_emulator.bench")
    parser.add_argument("--transfers", type=int, default=10_000)
    parser.add_argument("--no-expand", action="store_true")
    parser.add_argument("--db", default=None)
    args = parser.parse_args(argv)
    print(json.dumps(run(args.transfers, expand=not args.no_expand, db_path=args.db)))


if __name__ == "__main__":
    main()
