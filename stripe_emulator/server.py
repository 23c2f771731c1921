"""`EmulatorServer`: the emulator on a loopback port, in a background thread.

    server = EmulatorServer(port=0, webhook_url=..., webhook_secret="whsec_...",
                            chaos=ChaosConfig(seed=1), db_path=None)
    server.start()
    client = stripe.StripeClient("sk_test_x", base_addresses={"api": server.url},
                                 max_network_retries=0,
                                 http_client=stripe.RequestsClient(timeout=5))
    ...
    server.flush(5)          # wait for webhook deliveries
    server.state.transfers_by_metadata("payout_id")
    server.stop()

Control endpoints (no auth) live under /_emulator/: see `CONTROL_ENDPOINTS`.
"""

from __future__ import annotations

import contextlib
import json
import logging
import socket
import threading
from collections.abc import Iterator, Mapping
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlencode, urlsplit

from . import forms
from .api import Api
from .config import ChaosConfig
from .state import PLATFORM, Ctx, EmulatorState
from .webhooks import WebhookDispatcher

log = logging.getLogger("stripe_emulator")

DEFAULT_WEBHOOK_SECRET = "whsec_stripe_emulator_test_secret"  # noqa: S105 - a test secret

CONTROL_ENDPOINTS = {
    "GET /_emulator/health": "liveness",
    "GET /_emulator/stats": "object counts, transfers per metadata[payout_id], webhook and API stats",
    "GET /_emulator/chaos": "current chaos switches",
    "POST /_emulator/chaos": "change chaos switches (form or JSON body, e.g. drop_rate=0.5)",
    "POST /_emulator/redeliver_dropped": "queue every dropped webhook again",
    "POST /_emulator/redeliver_failed": "queue again webhooks that exhausted their retries",
    "POST /_emulator/flush": "wait until the webhook queue is drained (timeout=seconds)",
    "POST /_emulator/advance_clock": "move the emulator clock (seconds=N)",
    "POST /_emulator/reset": "forget all objects, events and queued deliveries",
    "GET /_emulator/webhook_endpoints": "configured endpoints",
    "POST /_emulator/webhook_endpoints": "add an endpoint (url, secret, connect=true|false)",
    "GET /_emulator/deliveries": "recent delivery attempts (limit=N)",
    "GET /_emulator/transfers/counts": "transfers per metadata value (key=payout_id)",
}


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 256

    def __init__(self, address: tuple[str, int], emulator: EmulatorServer) -> None:
        self.emulator = emulator
        self._connections: set[socket.socket] = set()
        self._connections_lock = threading.Lock()
        super().__init__(address, _Handler)

    def process_request(self, request: Any, client_address: Any) -> None:
        with self._connections_lock:
            self._connections.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        with self._connections_lock:
            self._connections.discard(request)
        super().shutdown_request(request)

    def close_connections(self) -> None:
        with self._connections_lock:
            connections = list(self._connections)
        for connection in connections:
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)


_MAX_HEADER_LINE = 65536  # http.client's limits
_MAX_HEADERS = 100


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive: the stripe client reuses its session
    server_version = "stripe-emulator/1.0"
    sys_version = ""
    disable_nagle_algorithm = True
    server: _HTTPServer
    raw_requestline: bytes  # set by handle_one_request
    headers: _RequestHeaders  # type: ignore[assignment]  # parse_request's, not an email Message

    def log_message(self, format: str, *args: Any) -> None:
        if self.server.emulator.verbose:
            super().log_message(format, *args)

    def parse_request(self) -> bool:
        """`BaseHTTPRequestHandler.parse_request` for HTTP/1.x, with the header block read
        into `_RequestHeaders` instead of through the `email` package (which took about a
        fifth of the emulator's CPU per request): the same answers to a malformed request
        line (400), an HTTP/2+ version (505), a header line over 64 KiB or more than 100
        fields (431), and the same keep-alive and `Expect: 100-continue` handling. HTTP/0.9
        (a request line without a version) is answered 400."""
        self.command = ""  # an error below is answered as to a request of no method
        self.request_version = self.default_request_version
        self.close_connection = True
        self.requestline = str(self.raw_requestline, "iso-8859-1").rstrip("\r\n")
        words = self.requestline.split()
        if not words:
            return False
        if len(words) != 3:
            self.send_error(HTTPStatus.BAD_REQUEST, f"Bad request syntax ({self.requestline!r})")
            return False
        command, path, version = words
        major, dot, minor = version[5:].partition(".")
        if not (
            version.startswith("HTTP/")
            and dot
            and major.isdigit()
            and minor.isdigit()
            and len(major) <= 10
            and len(minor) <= 10
        ):
            self.send_error(HTTPStatus.BAD_REQUEST, f"Bad request version ({version!r})")
            return False
        number = (int(major), int(minor))
        if number >= (2, 0):
            self.send_error(
                HTTPStatus.HTTP_VERSION_NOT_SUPPORTED, f"Invalid HTTP version ({version[5:]})"
            )
            return False
        self.request_version = version
        self.close_connection = number < (1, 1)
        self.command = command
        self.path = "/" + path.lstrip("/") if path.startswith("//") else path
        fields: list[tuple[str, str]] = []
        while True:
            line = self.rfile.readline(_MAX_HEADER_LINE + 1)
            if len(line) > _MAX_HEADER_LINE:
                self.send_error(HTTPStatus.REQUEST_HEADER_FIELDS_TOO_LARGE, "Line too long")
                return False
            if line in (b"\r\n", b"\n", b""):
                break
            if len(fields) >= _MAX_HEADERS:
                self.send_error(HTTPStatus.REQUEST_HEADER_FIELDS_TOO_LARGE, "Too many headers")
                return False
            text = line.decode("iso-8859-1").rstrip("\r\n")
            if text[:1] in (" ", "\t") and fields:  # an obsolete folded continuation line
                name, value = fields[-1]
                fields[-1] = (name, f"{value} {text.strip()}")
                continue
            name, colon, value = text.partition(":")
            if colon:
                fields.append((name.strip(), value.strip()))
        self.headers = _RequestHeaders(fields)
        connection = self.headers.get("Connection", "").lower()
        if connection == "close":
            self.close_connection = True
        elif connection == "keep-alive":
            self.close_connection = False
        if self.headers.get("Expect", "").lower() == "100-continue" and number >= (1, 1):
            return bool(self.handle_expect_100())
        return True

    def do_GET(self) -> None:
        self._handle("GET")

    def do_POST(self) -> None:
        self._handle("POST")

    def do_DELETE(self) -> None:
        self._handle("DELETE")

    def _handle(self, method: str) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length).decode("utf-8") if length else ""
        split = urlsplit(self.path)
        emulator = self.server.emulator
        try:
            if split.path.startswith("/_emulator/"):
                status, text, headers = emulator.control(
                    method, split.path, split.query, body, self.headers.get("Content-Type", "")
                )
            else:
                status, text, headers = emulator.api.handle(
                    method, split.path, split.query, body, self.headers
                )
        except Exception as exc:  # never let a bug kill the connection without an answer
            log.exception("stripe emulator: request failed")
            status = 500
            text = json.dumps({"error": {"type": "api_error", "message": f"Emulator error: {exc}"}})
            headers = {}
        payload = text.encode("utf-8")
        try:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            for name, value in headers.items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(payload)
        except (BrokenPipeError, ConnectionResetError, OSError):
            # The client gave up (e.g. a chaos timeout); the operation already happened.
            self.close_connection = True


class _RequestHeaders(Mapping[str, str]):
    """A request's header fields, looked up case-insensitively (the first of repeated ones)."""

    def __init__(self, fields: list[tuple[str, str]]) -> None:
        self._fields = fields
        self._first: dict[str, str] = {}
        for name, value in fields:
            self._first.setdefault(name.lower(), value)

    def __getitem__(self, key: str) -> str:
        return self._first[key.lower()]

    def get(self, key: str, default: Any = None) -> Any:
        return self._first.get(key.lower(), default)

    def __iter__(self) -> Iterator[str]:
        return (name for name, _ in self._fields)

    def __len__(self) -> int:
        return len(self._fields)


class EmulatorServer:
    """A stateful local Stripe API on `http://host:port`, served from a background thread."""

    def __init__(
        self,
        port: int = 0,
        *,
        host: str = "127.0.0.1",
        webhook_url: str | None = None,
        webhook_secret: str | None = None,
        connect_webhook_url: str | None = None,
        connect_webhook_secret: str | None = None,
        chaos: ChaosConfig | None = None,
        db_path: str | None = None,
        available_delay_seconds: int = 0,
        capture_delay_seconds: float = 0.0,
        idempotency_retention_seconds: int = 24 * 3600,
        webhook_max_attempts: int = 5,
        webhook_retry_backoff_seconds: float = 0.05,
        webhook_timeout_seconds: float = 5.0,
        webhook_threads: int = 1,
        verbose: bool = False,
    ) -> None:
        self.host = host
        self.requested_port = port
        self.verbose = verbose
        self.chaos = chaos or ChaosConfig()
        self.webhook_secret = webhook_secret or DEFAULT_WEBHOOK_SECRET
        self.state = EmulatorState(
            db_path=db_path,
            available_delay_seconds=available_delay_seconds,
            capture_delay_seconds=capture_delay_seconds,
            idempotency_retention_seconds=idempotency_retention_seconds,
        )
        self.webhooks = WebhookDispatcher(
            chaos=self.chaos,
            max_attempts=webhook_max_attempts,
            retry_backoff_seconds=webhook_retry_backoff_seconds,
            timeout_seconds=webhook_timeout_seconds,
            on_result=self.state.mark_delivered,
            threads=webhook_threads,
        )
        if webhook_url:
            self.webhooks.add_endpoint(webhook_url, self.webhook_secret)
        if connect_webhook_url:
            self.webhooks.add_endpoint(
                connect_webhook_url, connect_webhook_secret or self.webhook_secret, connect=True
            )
        self.state.event_sink = self.webhooks.enqueue
        self.state.webhook_targets = self.webhooks.target_count
        self.state.endpoint_hook = self.webhooks.upsert_api_endpoint
        self.api = Api(self.state, self.chaos)
        self._httpd: _HTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._ticker: threading.Thread | None = None
        self._ticker_stop = threading.Event()

    # -- lifecycle -------------------------------------------------------------------------

    def start(self) -> EmulatorServer:
        if self._httpd is not None:
            return self
        self._httpd = _HTTPServer((self.host, self.requested_port), self)
        self._thread = threading.Thread(
            target=self._httpd.serve_forever,
            kwargs={"poll_interval": 0.1},
            name="stripe-emulator",
            daemon=True,
        )
        self._thread.start()
        self.webhooks.start()
        # Stripe works on its own time: balance transactions attached after an asynchronous
        # capture, pending funds becoming available. The ticker runs what is due.
        self._ticker_stop.clear()
        self._ticker = threading.Thread(target=self._tick_loop, name="stripe-emulator-clock")
        self._ticker.daemon = True
        self._ticker.start()
        return self

    def _tick_loop(self) -> None:
        while not self._ticker_stop.wait(0.02):
            if self.state.due_work():
                try:
                    self.state.run_due()
                except Exception:  # keep ticking: a bug must not stop the clock
                    log.exception("stripe emulator: scheduled work failed")

    def stop(self) -> None:
        self._ticker_stop.set()
        if self._ticker is not None:
            self._ticker.join(5)
            self._ticker = None
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.close_connections()
            self._httpd.server_close()
            self._httpd = None
        if self._thread is not None:
            self._thread.join(5)
            self._thread = None
        self.webhooks.stop()
        self.state.close()

    def __enter__(self) -> EmulatorServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def serve_forever(self) -> None:
        """Start and block (the CLI)."""
        self.start()
        assert self._thread is not None
        try:
            while self._thread.is_alive():
                self._thread.join(0.5)
        finally:
            self.stop()

    @property
    def port(self) -> int:
        if self._httpd is None:
            raise RuntimeError("the emulator is not started")
        return int(self._httpd.server_address[1])

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    # -- test and demo helpers -------------------------------------------------------------

    def flush(self, timeout: float = 10.0) -> bool:
        """Run the work that is due (e.g. an asynchronous capture's balance transaction),
        then wait until every queued webhook delivery (and retry) is done; False on
        timeout. Work scheduled later (a capture delay) waits for its time."""
        self.state.run_due()
        return self.webhooks.flush(timeout)

    def settle(self, timeout: float = 10.0) -> bool:
        """Wait until no scheduled work is left (balance transactions attached), then flush.
        Real time: with a capture delay of N seconds this takes N seconds."""
        import time

        deadline = time.monotonic() + timeout
        while self.state.scheduled_count() and time.monotonic() < deadline:
            self.state.run_due()
            time.sleep(0.01)
        return self.flush(max(0.0, deadline - time.monotonic()))

    def redeliver_dropped(self) -> int:
        """Deliver the events chaos `drop_rate` held back; returns how many."""
        return self.webhooks.redeliver_dropped()

    def redeliver_failed(self) -> int:
        """Deliver again the events whose retries were exhausted; returns how many."""
        return self.webhooks.redeliver_failed()

    def set_chaos(self, chaos: ChaosConfig | None = None, **changes: Any) -> ChaosConfig:
        """Replace the chaos switches (or change some); reseeds the RNGs when `seed` is given."""
        new = chaos if chaos is not None else self.chaos.updated(changes)
        reseed = chaos is not None or "seed" in changes
        self.chaos = new
        self.api.set_chaos(new, reseed=reseed)
        self.webhooks.set_chaos(new, reseed=reseed)
        return new

    def add_webhook_endpoint(
        self, url: str, secret: str | None = None, *, connect: bool = False
    ) -> None:
        self.webhooks.add_endpoint(url, secret or self.webhook_secret, connect=connect)

    def advance_clock(self, seconds: int) -> None:
        self.state.advance_clock(seconds)

    def reset(self) -> None:
        self.webhooks.discard()
        self.state.reset()

    def transfer_counts(self, key: str = "payout_id") -> dict[str, int]:
        """Transfers per `metadata[key]` value: "exactly one transfer at Stripe" checks."""
        return self.state.transfers_by_metadata(key)

    def deliveries(self) -> list[dict[str, Any]]:
        return [d.__dict__.copy() for d in list(self.webhooks.log)]

    def stats(self) -> dict[str, Any]:
        counts = self.state.counts()
        return {
            "objects": counts,
            "transfers": {
                "total": counts.get("transfer", 0),
                "by_payout_id": self.state.transfers_by_metadata("payout_id"),
            },
            "webhooks": self.webhooks.snapshot(),
            "api": dict(self.api.stats),
            "chaos": self.chaos.to_dict(),
        }

    def request(
        self,
        method: str,
        path: str,
        params: Mapping[str, Any] | None = None,
        *,
        account: str | None = None,
        api_key: str = "sk_test_emulator",
        idempotency_key: str | None = None,
    ) -> tuple[int, dict[str, Any]]:
        """Call the API in-process (no HTTP), e.g. test helpers the stripe client lacks."""
        encoded = urlencode(forms.encode(params or {}))
        headers = {"Authorization": f"Bearer {api_key}"}
        if account:
            headers["Stripe-Account"] = account
        if idempotency_key:
            headers["Idempotency-Key"] = idempotency_key
        query, body = (encoded, "") if method.upper() == "GET" else ("", encoded)
        status, text, _ = self.api.handle(method.upper(), path, query, body, headers)
        return status, json.loads(text)

    # -- control endpoints -----------------------------------------------------------------

    def control(
        self, method: str, path: str, query: str, body: str, content_type: str
    ) -> tuple[int, str, dict[str, str]]:
        params: dict[str, Any]
        if method == "POST" and content_type.startswith("application/json") and body.strip():
            loaded = json.loads(body)
            params = loaded if isinstance(loaded, dict) else {}
        else:
            params = forms.decode(forms.parse_pairs(query) + forms.parse_pairs(body))
        route = f"{method} {path.rstrip('/')}"
        try:
            result = self._control(route, params)
        except (ValueError, TypeError) as exc:
            return (
                400,
                json.dumps({"error": {"type": "invalid_request_error", "message": str(exc)}}),
                {},
            )
        if result is None:
            message = f"Unknown control endpoint {route}. Known: {sorted(CONTROL_ENDPOINTS)}"
            return (
                404,
                json.dumps({"error": {"type": "invalid_request_error", "message": message}}),
                {},
            )
        return 200, json.dumps(result, indent=2, default=str), {}

    def _control(self, route: str, params: dict[str, Any]) -> Any:
        if route == "GET /_emulator/health":
            return {"ok": True}
        if route == "GET /_emulator/stats":
            return self.stats()
        if route == "GET /_emulator/chaos":
            return self.chaos.to_dict()
        if route == "POST /_emulator/chaos":
            return self.set_chaos(**params).to_dict()
        if route == "POST /_emulator/redeliver_dropped":
            return {"redelivered": self.redeliver_dropped()}
        if route == "POST /_emulator/redeliver_failed":
            return {"redelivered": self.redeliver_failed()}
        if route == "POST /_emulator/flush":
            return {"drained": self.flush(float(params.get("timeout", 10)))}
        if route == "POST /_emulator/advance_clock":
            self.advance_clock(int(params.get("seconds", 0)))
            return {"now": self.state.now()}
        if route == "POST /_emulator/reset":
            self.reset()
            return {"reset": True}
        if route == "GET /_emulator/webhook_endpoints":
            return self.webhooks.snapshot()["endpoints"]
        if route == "POST /_emulator/webhook_endpoints":
            connect = str(params.get("connect", "false")).lower() in ("1", "true", "yes")
            self.add_webhook_endpoint(str(params["url"]), params.get("secret"), connect=connect)
            return self.webhooks.snapshot()["endpoints"]
        if route == "GET /_emulator/deliveries":
            limit = int(params.get("limit", 100))
            return self.deliveries()[-limit:]
        if route == "GET /_emulator/transfers/counts":
            return self.transfer_counts(str(params.get("key", "payout_id")))
        return None


__all__ = ["PLATFORM", "Ctx", "EmulatorServer"]
