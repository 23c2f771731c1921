"""Fail fast, in one line, when PostgreSQL or Redis is not reachable (used by `make test`)."""

import os
import socket
import sys
from urllib.parse import urlparse


def reachable(url: str, default_port: int) -> tuple[str, int, bool]:
    parsed = urlparse(url)
    host, port = parsed.hostname or "127.0.0.1", parsed.port or default_port
    try:
        with socket.create_connection((host, port), timeout=2):
            return host, port, True
    except OSError:
        return host, port, False


def main() -> int:
    database_url = os.environ.get("DATABASE_URL", "")
    redis_url = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
    if not database_url.startswith(("postgres://", "postgresql://")):
        print(f"make test needs DATABASE_URL to point at PostgreSQL, got {database_url!r}")
        return 1
    host, port, ok = reachable(database_url, 5432)
    if not ok:
        print(
            f"PostgreSQL is not reachable at {host}:{port}; start it with: "
            "pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start"
        )
        return 1
    host, port, ok = reachable(redis_url, 6379)
    if not ok:
        print(
            f"Redis is not reachable at {host}:{port}; start it with: "
            'redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no'
        )
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
