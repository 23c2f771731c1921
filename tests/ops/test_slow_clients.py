"""Slow clients: connections trickling a request (one byte a second) must not freeze the web
tier. Gunicorn runs the project's config (ops/gunicorn_conf.py: gthread workers); with the
former sync workers two such connections stalled /healthz until the workers were killed."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def healthz_seconds(port: int) -> float:
    started = time.perf_counter()
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=10) as response:
        assert response.status == 200
    return time.perf_counter() - started


def trickle(port: int, stop: threading.Event, header_only: bool) -> None:
    """A client sending one byte a second: of its headers, or of a declared 10 kB body."""
    with socket.create_connection(("127.0.0.1", port)) as sock:
        if header_only:
            payload = b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: " + b"a" * 1000
        else:
            sock.sendall(
                b"POST /webhooks/stripe/ HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                b"Content-Type: application/json\r\nContent-Length: 10000\r\n"
                # signed-looking, so that the webhook view reads the whole body
                b"Stripe-Signature: t=1700000000,v1=" + b"0" * 64 + b"\r\n\r\n"
            )
            payload = b"x" * 10000
        for byte in payload:
            if stop.is_set():
                return
            try:
                sock.sendall(bytes([byte]))
            except OSError:
                return
            stop.wait(1.0)


def test_slow_clients_do_not_stall_the_web_tier(tmp_path):
    port = free_port()
    env = {
        **os.environ,
        "DJANGO_ENV": "test",
        "BIND": f"127.0.0.1:{port}",
        "WEB_WORKERS": "2",
        "WEB_THREADS": "8",
        "ALLOWED_HOSTS": "127.0.0.1",
        # multiprocess metrics, as in the image: each worker writes its own files here
        "PROMETHEUS_MULTIPROC_DIR": str(tmp_path / "prometheus"),
    }
    (tmp_path / "prometheus").mkdir()
    server = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "config.wsgi", "-c", "python:ops.gunicorn_conf"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    stop = threading.Event()
    clients: list[threading.Thread] = []
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                healthz_seconds(port)
                break
            except OSError:
                assert time.monotonic() < deadline, "gunicorn did not start"
                time.sleep(0.2)
        # given: four slow bodies and two slow header sets, more than the two workers
        for header_only in (False, False, False, False, True, True):
            client = threading.Thread(target=trickle, args=(port, stop, header_only), daemon=True)
            client.start()
            clients.append(client)
        time.sleep(3)

        # when: a probe arrives during the next 5 s, repeatedly
        timings = [healthz_seconds(port) for _ in range(10)]

        # then: answered at once each time
        assert max(timings) < 1.0, timings
        assert server.poll() is None
        # and the workers' request metrics are summed from their files by any one of them
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
            body = response.read().decode()
        assert "eats_webhook_request_seconds_bucket" in body
        assert list((tmp_path / "prometheus").glob("*.db"))
    finally:
        stop.set()
        server.terminate()
        server.wait(timeout=30)
        for client in clients:
            client.join(timeout=5)
