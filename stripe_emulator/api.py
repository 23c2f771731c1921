"""The HTTP-independent API layer: auth, routing, chaos, idempotency, error JSON.

`Api.handle(method, path, query, body, headers)` returns `(status, body, headers)`; the
HTTP server (server.py) only moves bytes. Order of a request, as on Stripe:
auth -> route -> chaos "error before" -> idempotency (replay / mismatch / in flight) ->
chaos "timeout" sleep -> the operation under the state lock -> chaos "error after" ->
save the answer under the idempotency key.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import logging
import random
import threading
import time
from collections.abc import Mapping
from typing import Any

from . import forms
from .config import ChaosConfig
from .errors import ApiError, api_error
from .resources import resolve
from .state import Ctx, EmulatorState, new_id

log = logging.getLogger("stripe_emulator")

Response = tuple[int, str, dict[str, str]]

IDEMPOTENCY_NS = "idempotency"


def _dumps(obj: Any) -> str:
    return json.dumps(obj, separators=(",", ":"))


def _error(status: int, type_: str, message: str, **fields: Any) -> str:
    error = {"type": type_, "message": message}
    error.update({k: v for k, v in fields.items() if v is not None})
    return _dumps({"error": error})


class Api:
    """Stripe's /v1 API over an `EmulatorState`, with chaos and idempotency."""

    def __init__(self, state: EmulatorState, chaos: ChaosConfig) -> None:
        self.state = state
        self.chaos = chaos
        self.rng = random.Random(chaos.seed)
        self._rng_lock = threading.Lock()
        self._in_flight: set[str] = set()
        self.stats: dict[str, int] = {
            "requests": 0,
            "errors_4xx": 0,
            "errors_5xx": 0,
            "chaos_errors_before": 0,
            "chaos_timeouts": 0,
            "chaos_errors_after": 0,
            "chaos_rate_limited": 0,
            "idempotency_keys_pruned": 0,
            "idempotent_replays": 0,
        }
        self._stats_lock = threading.Lock()

    def set_chaos(self, chaos: ChaosConfig, *, reseed: bool) -> None:
        with self._rng_lock:
            self.chaos = chaos
            if reseed:
                self.rng = random.Random(chaos.seed)

    def _count(self, name: str) -> None:
        with self._stats_lock:
            self.stats[name] += 1

    def _roll(self, method: str, path: str) -> str | None:
        with self._rng_lock:
            chaos = self.chaos
            if not chaos.api_applies(method, path):
                return None
            total = (
                chaos.api_rate_limit_rate
                + chaos.api_error_rate
                + chaos.api_timeout_rate
                + chaos.api_error_after_rate
            )
            if total <= 0:
                return None
            roll = self.rng.random()
        if roll < chaos.api_rate_limit_rate:
            return "rate_limit"
        roll -= chaos.api_rate_limit_rate
        if roll < chaos.api_error_rate:
            return "error_before"
        if roll < chaos.api_error_rate + chaos.api_timeout_rate:
            return "timeout"
        if roll < total - chaos.api_rate_limit_rate:
            return "error_after"
        return None

    def handle(
        self, method: str, path: str, query: str, body: str, headers: Mapping[str, str]
    ) -> Response:
        self._count("requests")
        status, text, out_headers = self._handle(method, path, query, body, headers)
        if 400 <= status < 500:
            self._count("errors_4xx")
        elif status >= 500:
            self._count("errors_5xx")
        return status, text, out_headers

    def _handle(
        self, method: str, path: str, query: str, body: str, headers: Mapping[str, str]
    ) -> Response:
        request_id = "req_" + new_id("x")[2:16]
        base = {
            "Request-Id": request_id,
            "Stripe-Version": headers.get("Stripe-Version") or self.state.api_version,
        }
        if not path.startswith("/v1/"):
            return (
                404,
                _error(
                    404, "invalid_request_error", f"Unrecognized request URL ({method}: {path})."
                ),
                base,
            )

        api_key = _api_key(headers.get("Authorization", ""))
        if not api_key:
            return (
                401,
                _error(
                    401,
                    "invalid_request_error",
                    "You did not provide an API key. You need to provide your API key in the"
                    " Authorization header, using Bearer auth (e.g. 'Authorization: Bearer"
                    " YOUR_SECRET_KEY').",
                ),
                {**base, "WWW-Authenticate": 'Bearer realm="Stripe"'},
            )
        if not api_key.startswith(("sk_test_", "rk_test_")):
            masked = api_key[:8] + "*" * max(0, len(api_key) - 12) + api_key[-4:]
            return (
                401,
                _error(401, "invalid_request_error", f"Invalid API Key provided: {masked}"),
                base,
            )
        account = headers.get("Stripe-Account") or ""
        if account and not self.state.is_account(account):
            return (
                403,
                _error(
                    403,
                    "invalid_request_error",
                    f"The provided key does not have access to account '{account}' (or that"
                    " account does not exist). Application access may have been revoked.",
                    code="account_invalid",
                ),
                base,
            )

        route = resolve(method, path)
        if not isinstance(route, tuple):
            return (
                404,
                _error(
                    404, "invalid_request_error", f"Unrecognized request URL ({method}: {path})."
                ),
                base,
            )
        handler, ids = route

        pairs = (
            forms.parse_pairs(query)
            if method == "GET"
            else forms.parse_pairs(body) + forms.parse_pairs(query)
        )
        try:
            params = forms.decode(pairs)
            expand = forms.get_expand(params)
        except ApiError as error:
            return error.status, _dumps(error.body()), base

        chaos = self._roll(method, path)
        if chaos == "rate_limit":
            self._count("chaos_rate_limited")
            return (
                429,
                _error(
                    429,
                    "invalid_request_error",
                    "Too many requests hit the API too quickly. We recommend an exponential"
                    " backoff of your requests.",
                    code="rate_limit",
                ),
                {**base, "Stripe-Should-Retry": "true"},
            )
        if chaos == "error_before":
            self._count("chaos_errors_before")
            return (
                500,
                _error(
                    500,
                    "api_error",
                    "Emulated failure before processing (chaos api_error_rate): nothing was done.",
                ),
                base,
            )

        idempotency_key = headers.get("Idempotency-Key") if method == "POST" else None
        scope = None
        fingerprint = None
        if idempotency_key:
            if len(idempotency_key) > 255:
                return (
                    400,
                    _error(
                        400,
                        "invalid_request_error",
                        "Idempotency keys can be at most 255 characters long.",
                        param="Idempotency-Key",
                    ),
                    base,
                )
            scope = f"{api_key}|{account}|{idempotency_key}"
            fingerprint = hashlib.sha256(_dumps([method, path, sorted(pairs)]).encode()).hexdigest()
            with self.state.lock:
                if scope in self._in_flight:
                    return (
                        409,
                        _error(
                            409,
                            "idempotency_error",
                            "There is currently another in-progress request using this Idempotent"
                            " Key (that probably means you submitted twice, and the other request"
                            " is still going through): "
                            + idempotency_key
                            + ". Please try again later.",
                            code="idempotency_key_in_use",
                        ),
                        base,
                    )
                record = self.state.store.kv_get(IDEMPOTENCY_NS, scope)
                if record is not None and self._expired(record):
                    # Stripe prunes keys at least 24 h old: the key starts afresh.
                    self._count("idempotency_keys_pruned")
                    record = None
                if record is not None:
                    if record["fingerprint"] != fingerprint:
                        return (
                            400,
                            _error(
                                400,
                                "idempotency_error",
                                "Keys for idempotent requests can only be used with the same"
                                " parameters they were first used with. Try using a key other than"
                                f" '{idempotency_key}' if you meant to execute a different request.",
                            ),
                            base,
                        )
                    self._count("idempotent_replays")
                    return (
                        record["status"],
                        record["body"],
                        {
                            **base,
                            "Idempotent-Replayed": "true",
                            "Original-Request": record["request_id"],
                            "Idempotency-Key": idempotency_key,
                            "Stripe-Should-Retry": "false",
                        },
                    )
                self._in_flight.add(scope)

        try:
            if chaos == "timeout":
                self._count("chaos_timeouts")
                # "Outcome unknown": the client gives up, then the operation still happens.
                time.sleep(self.chaos.api_timeout_seconds)
            ctx = Ctx(
                account=account,
                request_id=request_id,
                idempotency_key=idempotency_key,
                api_key=api_key,
            )
            status, text, save = self._execute(handler, ids, ctx, params, expand)
            if chaos == "error_after" and status == 200:
                self._count("chaos_errors_after")
                status = 500
                text = _error(
                    500,
                    "api_error",
                    "Emulated failure after processing (chaos api_error_after_rate): the"
                    " operation was performed.",
                )
                save = True
            out_headers = dict(base)
            if idempotency_key:
                out_headers["Idempotency-Key"] = idempotency_key
            if scope is not None and save:
                with self.state.lock:
                    self.state.store.kv_set(
                        IDEMPOTENCY_NS,
                        scope,
                        {
                            "fingerprint": fingerprint,
                            "status": status,
                            "body": text,
                            "request_id": request_id,
                            "created": self.state.now(),
                        },
                    )
                    self.state.store.commit()
            if status >= 500:
                # As on Stripe: a saved 500 would only be replayed, so retrying is pointless.
                out_headers["Stripe-Should-Retry"] = "false" if save and scope else "true"
            return status, text, out_headers
        finally:
            if scope is not None:
                with self.state.lock:
                    self._in_flight.discard(scope)

    def _expired(self, record: dict[str, Any]) -> bool:
        created = record.get("created")
        if created is None:
            return False
        return self.state.now() - int(created) >= self.state.idempotency_retention_seconds

    def _execute(
        self, handler: Any, ids: tuple[str, ...], ctx: Ctx, params: forms.Params, expand: list[str]
    ) -> tuple[int, str, bool]:
        try:
            with self.state.run():
                result = handler(self.state, ctx, params, *ids)
                out = self.state.present(result, expand)
            return 200, _dumps(out), True
        except ApiError as error:
            return error.status, _dumps(error.body()), error.store
        except Exception as exc:  # an emulator bug: answer like Stripe would, keep serving
            log.exception(
                "stripe emulator: unhandled error in %s", getattr(handler, "__name__", handler)
            )
            internal = api_error(f"Emulator internal error: {type(exc).__name__}: {exc}")
            return 500, _dumps(internal.body()), False


def _api_key(authorization: str) -> str:
    if authorization.startswith("Bearer "):
        return authorization[len("Bearer ") :].strip()
    if authorization.startswith("Basic "):
        try:
            decoded = base64.b64decode(authorization[len("Basic ") :]).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            return ""
        return decoded.split(":", 1)[0]
    return ""
