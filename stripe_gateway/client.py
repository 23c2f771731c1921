"""The Stripe seam: the only module of the project that imports `stripe`.

Owns: the configured `stripe.StripeClient`, amount conversion between our `(int, "USD/2")`
and Stripe's `(amount, "usd")`, the mapping of Stripe errors to `stripe_gateway.errors`, and the
rule "no Stripe call inside a database transaction". Everything returned is a plain `dict`
(recursively), so no other module ever touches a `stripe` object or exception.

Rules every caller follows:
- Every POST takes a caller-chosen, deterministic `idempotency_key` (`refund:<id>`,
  `transfer:<payout id>`...), required, never generated here. On `OutcomeUnknown` retry with
  the SAME key and parameters, or look the object up (`transfers_find`); never a new key.
- Never call the gateway inside `transaction.atomic()`: record the intent, commit, call,
  record the result. `_call` checks it (an error log in production, an exception when
  `settings.STRIPE_FORBID_IN_ATOMIC`, a test failure under `stripe_gateway.testing`).

Must not import: any other app (ledger, payouts, reconciliation); it is a leaf.
"""

from __future__ import annotations

import json
import logging
import os
import re
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, cast
from urllib.parse import quote_plus

import requests
import stripe
import urllib3
from django.conf import settings
from django.db import connections

from stripe_gateway import conf
from stripe_gateway.errors import (
    AssetNotSupported,
    CardDeclined,
    InvalidRequest,
    OutcomeUnknown,
    PaymentProviderError,
    ProviderConfigurationError,
    ProviderObjectNotFound,
    ProviderUnavailable,
    StripeCallInTransaction,
)

logger = logging.getLogger(__name__)

__all__ = [
    "CAPTURE_METHOD",
    "PINNED_API_VERSION",
    "StripeGateway",
    "from_stripe_amount",
    "get_gateway",
    "open_atomic_depth",
    "to_stripe_amount",
]

# The API version every request and every webhook endpoint uses: the one stripe-python pins
# (the SDK sends it as `Stripe-Version`; `stripe_webhooks setup` creates endpoints with it, so
# event payloads have the shapes this code reads).
PINNED_API_VERSION: str = stripe.api_version
# Stated explicitly although it is the pinned version's default (since 2024-04-10): with
# asynchronous capture, a succeeded charge's `balance_transaction` is null in the API answer
# and in `charge.succeeded` / `payment_intent.succeeded`; `charge.updated` tells when Stripe
# attaches it (marketplace.services.payments books the payment then).
CAPTURE_METHOD = "automatic_async"

# --- amounts ------------------------------------------------------------------------------
# Stripe's minor unit per currency (https://docs.stripe.com/currencies): zero-decimal and
# three-decimal currencies; everything else has two decimals in the API. ISK, HUF and TWD stay
# two-decimal in the API even where only whole units are accepted (amount % 100 == 0).
ZERO_DECIMAL = frozenset(
    {"BIF", "CLP", "DJF", "GNF", "JPY", "KMF", "KRW", "MGA"}
    | {"PYG", "RWF", "UGX", "VND", "VUV", "XAF", "XOF", "XPF"}
)
THREE_DECIMAL = frozenset({"BHD", "JOD", "KWD", "OMR", "TND"})
_ASSET = re.compile(r"^([A-Z]{3})(?:/(\d{1,2}))?$")
_CURRENCY = re.compile(r"^[a-zA-Z]{3}$")


def stripe_exponent(currency: str) -> int:
    """Number of decimals Stripe uses for `currency` (ISO code, any case) in API amounts."""
    code = currency.upper()
    if code in ZERO_DECIMAL:
        return 0
    if code in THREE_DECIMAL:
        return 3
    return 2


def _asset_for(currency: str) -> str:
    code = currency.upper()
    exponent = stripe_exponent(code)
    return code if exponent == 0 else f"{code}/{exponent}"


def to_stripe_amount(amount: int, asset: str) -> tuple[int, str]:
    """`(1234, "USD/2") -> (1234, "usd")`; `(500, "JPY") -> (500, "jpy")`.

    Raises AssetNotSupported when the asset's scale is not Stripe's minor unit for that
    currency (`USD/3`, `JPY/2`, and `JPY/0`: zero-decimal assets are written `JPY`), and
    ValueError when `amount` is not an int (floats and bools are refused, never rounded).
    """
    if type(amount) is not int:
        raise ValueError(f"amount must be an int in minor units, got {amount!r}")
    match = _ASSET.match(asset) if isinstance(asset, str) else None
    if match is None:
        raise AssetNotSupported(
            f"{asset!r} is not an asset of the form 'USD/2' or 'JPY'", extra={"asset": asset}
        )
    code = match.group(1)
    expected = stripe_exponent(code)
    canonical = _asset_for(code)
    if asset != canonical:
        raise AssetNotSupported(
            f"Stripe amounts in {code} have {expected} decimal(s): use asset {canonical!r}, "
            f"not {asset!r}",
            extra={"asset": asset, "expected_asset": canonical},
        )
    return amount, code.lower()


def from_stripe_amount(amount: int, currency: str) -> tuple[int, str]:
    """`(1234, "usd") -> (1234, "USD/2")`; `(500, "jpy") -> (500, "JPY")`."""
    if type(amount) is not int:
        raise ValueError(f"Stripe amounts are ints, got {amount!r}")
    if not isinstance(currency, str) or not _CURRENCY.match(currency):
        raise AssetNotSupported(f"{currency!r} is not a currency code", extra={"asset": currency})
    return amount, _asset_for(currency)


# Stripe's `cancellation_reason` values for a PaymentIntent.
PAYMENT_INTENT_CANCEL_REASONS = frozenset(
    {"abandoned", "duplicate", "fraudulent", "requested_by_customer"}
)


# --- the transaction guard ----------------------------------------------------------------
def open_atomic_depth() -> int:
    """How many `atomic()` blocks the code has open on any initialised connection.

    Blocks opened by Django's TestCase machinery (pytest-django's `django_db`) are not
    counted, so the same check works in production and inside a test's wrapping transaction.
    """
    depth = 0
    for connection in connections.all(initialized_only=True):
        for block in connection.atomic_blocks:
            if not getattr(block, "_from_testcase", False):
                depth += 1
    return depth


def _transaction_guard(operation: str) -> None:
    if open_atomic_depth() == 0:
        return
    message = (
        f"Stripe call {operation} inside an open database transaction: commit first, "
        "then call Stripe (see stripe_gateway.client)"
    )
    if settings.STRIPE_FORBID_IN_ATOMIC:
        raise StripeCallInTransaction(message)
    logger.error(message, extra={"stripe_operation": operation})


# --- the gateway --------------------------------------------------------------------------
def _plain(value: Any) -> Any:
    """Recursively turn stripe objects into dicts/lists of JSON-able values.

    `for_json=True`: stripe-python 16 parses `*_decimal` fields into `Decimal`; they go back
    to the strings Stripe sent, so results can be stored in a JSONField as they are.
    """
    if isinstance(value, stripe.StripeObject):
        return value.to_dict(recursive=True, for_json=True)
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def _compact(params: Mapping[str, Any]) -> dict[str, Any]:
    """Drop None values: Stripe treats an explicit empty value as "unset this field"."""
    return {k: v for k, v in params.items() if v is not None}


def _metadata(metadata: Mapping[str, Any] | None) -> dict[str, str] | None:
    if metadata is None:
        return None
    return {str(k): str(v) for k, v in metadata.items()}


def _check_key(idempotency_key: str) -> str:
    if not isinstance(idempotency_key, str) or not idempotency_key.strip():
        raise ValueError("every Stripe POST needs a caller-chosen idempotency_key")
    if len(idempotency_key) > 255:
        raise ValueError("Stripe idempotency keys are at most 255 characters")
    return idempotency_key


def _positive(amount: int) -> None:
    if type(amount) is not int or amount <= 0:
        raise ValueError(f"amount must be a positive int in minor units, got {amount!r}")


class _Session(requests.Session):
    """A `requests.Session` for the Stripe API only, with `request` cut down to what that
    API needs: the request prepared and handed to the mounted adapter (so `responses` and
    any other adapter-level double still see it), no cookie jar, no redirects, no hooks, no
    environment (see `_HttpClient`).

    `Session.request` spends about half of its CPU around the adapter: merging the session's
    and the call's settings and cookies (runtime `Protocol` isinstance checks), reading the
    response's cookies into the jar, resolving redirects. Stripe's API sets no cookie the
    client must send back and answers without redirects (a 3xx is returned to the SDK as it
    is, which raises it as an API error instead of following it)."""

    def request(  # type: ignore[override]
        self,
        method: str,
        url: str,
        headers: Mapping[str, str] | None = None,
        data: Any = None,
        timeout: Any = None,
        verify: Any = True,
        proxies: Mapping[str, str] | None = None,
        stream: bool = False,
        **other: Any,
    ) -> requests.Response:
        if other:  # an SDK version asking for more than the above: requests' own way
            return super().request(
                method,
                url,
                headers=headers,
                data=data,
                timeout=timeout,
                verify=verify,
                proxies=dict(proxies) if proxies is not None else None,
                stream=stream,
                **other,
            )
        prepared = requests.PreparedRequest()
        prepared.prepare(
            method=method,
            url=url,
            headers={**self.headers, **headers} if headers else dict(self.headers),
            data=data,
        )
        adapter = self.get_adapter(url)
        response = adapter.send(
            prepared,
            stream=stream,
            timeout=timeout,
            verify=verify,
            cert=None,
            proxies=dict(proxies) if proxies else dict(self.proxies),
        )
        if not stream:
            response.content  # noqa: B018 (read the body now: a timeout raises here)
        return response


class _HttpClient(stripe.RequestsClient):
    """stripe-python's `requests` client (one session per thread, as the SDK makes them),
    with the environment read once instead of on every call, and a `_Session`.

    A session that trusts the environment (requests' default) reads the proxy variables
    (scanning the whole environment, three times), NO_PROXY and ~/.netrc for every request:
    a third of the SDK's client CPU per call. Here the proxies the environment names for the
    API's address (HTTPS_PROXY, ALL_PROXY..., none when NO_PROXY covers it) are read when the
    gateway is built and set on each session, which trusts the environment no further. The
    certificate bundle was never taken from it (the SDK passes its own), and a ~/.netrc entry
    would have replaced the API key's `Authorization` header: not wanted either."""

    def __init__(self, *, api_base: str, timeout: tuple[float, float]) -> None:
        super().__init__(timeout=timeout)
        self._proxies = _environ_proxies(api_base)

    def _request_internal(self, *args: Any, **kwargs: Any) -> Any:
        if getattr(self._thread_local, "session", None) is None:
            session = _Session()
            session.trust_env = False
            session.proxies.update(self._proxies)
            self._thread_local.session = session
        return super()._request_internal(*args, **kwargs)  # type: ignore[call-overload]


def _environ_proxies(api_base: str) -> dict[str, str]:
    """The proxies the environment names for `api_base` ({scheme or "all": url}; none when
    NO_PROXY covers it), read once by each transport when the gateway is built."""
    environ = requests.utils.get_environ_proxies(api_base)
    return {k: v for k, v in environ.items() if k != "no" and v}


class _Urllib3Client(stripe.HTTPClient):
    """stripe-python's HTTP transport on urllib3 alone (`STRIPE_HTTP_CLIENT=urllib3`, the
    default): the SDK's requestor above it is unchanged (headers, form encoding, the
    idempotency key, retries, error mapping), only the HTTP exchange is made without
    `requests`, whose prepared request, adapter and response objects cost about a third of
    a call's client CPU (a charge fetch from the emulator: 520 -> 360 us of thread CPU).

    The same contract as the SDK's `RequestsClient`: one thread-safe pool of keep-alive
    connections; certificates verified against the SDK's bundle (`stripe.ca_bundle_path`);
    the proxy the environment names for the API's address, read once (as `_HttpClient`);
    separate connect and read timeouts; no redirect followed (a 3xx goes back to the SDK,
    which raises it); a connection or read failure raised as a retryable
    `APIConnectionError` (the SDK retries it, with the same idempotency key), a TLS failure
    as a final one. `responses`, the tests' Stripe double, intercepts `requests` only: the
    tests that use it build their gateway with `http_client="requests"`."""

    name = "urllib3"

    def __init__(self, *, api_base: str, timeout: tuple[float, float]) -> None:
        super().__init__(verify_ssl_certs=True)
        proxies = _environ_proxies(api_base)
        proxy = proxies.get(api_base.split(":", 1)[0].lower()) or proxies.get("all")
        options: dict[str, Any] = {
            "num_pools": 4,
            "maxsize": 32,  # a connection per gunicorn thread or Celery process at most
            "timeout": urllib3.Timeout(connect=timeout[0], read=timeout[1]),
            "retries": False,
            "cert_reqs": "CERT_REQUIRED",
            "ca_certs": stripe.ca_bundle_path,
        }
        self._pool: Any = (
            urllib3.ProxyManager(proxy, **options) if proxy else urllib3.PoolManager(**options)
        )
        self._pid = os.getpid()

    def request(
        self,
        method: str,
        url: str,
        headers: Mapping[str, str] | None,
        post_data: Any = None,
        *,
        _usage: list[str] | None = None,
    ) -> tuple[Any, int, Mapping[str, str]]:
        errors = urllib3.exceptions
        if self._pid != os.getpid():
            # a process forked from the one that made the pool (a prefork worker, say) never
            # shares its connections: the two would read each other's answers
            self._pool.clear()
            self._pid = os.getpid()
        try:
            response = self._pool.request(
                method.upper(),
                url,
                body=post_data,
                headers=dict(headers or {}),
                redirect=False,
                retries=False,
                preload_content=True,
            )
        except errors.SSLError as exc:
            raise stripe.APIConnectionError(
                f"Could not verify Stripe's SSL certificate: {type(exc).__name__}: {exc}",
                should_retry=False,
            ) from exc
        except (errors.TimeoutError, errors.ProtocolError, errors.ProxyError) as exc:
            # connection refused or dropped, connect or read timeout: the SDK retries
            raise stripe.APIConnectionError(
                f"Unexpected error communicating with Stripe: {type(exc).__name__}: {exc}",
                should_retry=True,
            ) from exc
        except (errors.HTTPError, OSError, ValueError) as exc:
            raise stripe.APIConnectionError(
                f"Unexpected error communicating with Stripe: {type(exc).__name__}: {exc}",
                should_retry=False,
            ) from exc
        return response.data, response.status, response.headers

    # request_stream: the base class's (NotImplementedError); the gateway never streams

    def close(self) -> None:
        self._pool.clear()


def _sdk_logs_when_enabled() -> None:
    """stripe-python formats its request and response log lines (the response body's included)
    before the logging level is looked at: about a tenth of a millisecond of CPU per call
    with the `stripe` logger at WARNING, as in production. Its requestor's two log functions
    are wrapped to format only when the line goes somewhere: the `stripe` logger enabled for
    that level, or the SDK's own console logging (`stripe.log`, STRIPE_LOG) asking for it.
    What is logged, and where, is unchanged (tests/marketplace/test_stripe_api.py)."""
    from stripe import _api_requestor, _util

    sdk_logger = logging.getLogger("stripe")

    def guarded(original: Callable[..., None], level: int, console: tuple[str, ...]) -> Any:
        def log(message: str, **params: Any) -> None:
            if sdk_logger.isEnabledFor(level) or _util._console_log_level() in console:
                original(message, **params)

        log.__wrapped__ = original  # type: ignore[attr-defined]
        return log

    if not callable(getattr(_util, "_console_log_level", None)):
        return  # another SDK version may log differently: then it is left as it is
    for name, level, console in (
        ("log_info", logging.INFO, ("debug", "info")),
        ("log_debug", logging.DEBUG, ("debug",)),
    ):
        current = getattr(_api_requestor, name, None)
        if current is getattr(_util, name, None) and current is not None:
            setattr(_api_requestor, name, guarded(current, level, console))


_sdk_logs_when_enabled()


class StripeGateway:
    """Typed, dict-returning access to the Stripe calls the marketplace makes.

    Build it with `get_gateway()` (from settings) or directly with another `api_base`
    (the emulator, a test double). Safe to share between threads.
    """

    def __init__(
        self,
        *,
        api_key: str,
        api_base: str = "https://api.stripe.com",
        timeout: float = 20.0,
        max_network_retries: int = 2,
        stripe_account: str | None = None,
        http_client: str = "urllib3",
    ):
        connect_timeout = min(5.0, timeout)
        self.api_base = api_base
        if http_client not in conf.HTTP_CLIENTS:
            raise ValueError(f"http_client must be one of {conf.HTTP_CLIENTS}, not {http_client!r}")
        self.http_client = http_client
        transport = _Urllib3Client if http_client == "urllib3" else _HttpClient
        self._http: stripe.HTTPClient = transport(
            api_base=api_base, timeout=(connect_timeout, timeout)
        )
        self._client = stripe.StripeClient(
            api_key,
            stripe_account=stripe_account,
            base_addresses={"api": api_base},
            max_network_retries=max_network_retries,
            http_client=self._http,
        )
        self.v1 = self._client.v1

    # Every HTTP request of this class goes through `_call`: one place for the transaction
    # guard, error mapping, logging and the `stripe_gateway.testing` hook.
    def _call(
        self,
        operation: str,
        fn: Callable[..., Any],
        *args: Any,
        write: bool,
        params: Mapping[str, Any] | None = None,
        options: Mapping[str, Any] | None = None,
    ) -> dict[str, Any]:
        _transaction_guard(operation)
        started = time.perf_counter()
        try:
            result = fn(*args, params=dict(params or {}), options=dict(options or {}))
        except stripe.StripeError as exc:
            raise _map_error(exc, operation=operation, write=write) from exc
        finally:
            logger.debug(
                "stripe %s took %.1f ms", operation, (time.perf_counter() - started) * 1000
            )
        if isinstance(result, stripe.StripeResponse):
            # The JSON as Stripe sent it, in plain dicts (`data` is made of OrderedDicts).
            return cast(dict[str, Any], json.loads(result.body))
        return _plain(result)

    def _raw_get(
        self, path: str, *, params: Mapping[str, Any], options: Mapping[str, Any]
    ) -> stripe.StripeResponse:
        """GET `path` through the same requestor, retries and errors as the services, without
        building stripe objects: what `_plain` turned them back into is the JSON body itself
        (a third of a fetch's CPU went into that round trip, the webhook handlers' hot path)."""
        response: stripe.StripeResponse = self._client.raw_request("get", path, **params, **options)
        return response

    def _raw_post(
        self, path: str, *, params: Mapping[str, Any], options: Mapping[str, Any]
    ) -> stripe.StripeResponse:
        """POST `path` as `_raw_get` GETs: the same requestor, form encoding, retries (with the
        idempotency key) and errors as the services, without building stripe objects."""
        response: stripe.StripeResponse = self._client.raw_request(
            "post", path, **params, **options
        )
        return response

    def _retrieve(
        self,
        operation: str,
        resource: str,
        object_id: str,
        *,
        params: Mapping[str, Any] | None = None,
        stripe_account: str | None = None,
    ) -> dict[str, Any]:
        """`GET /v1/<resource>/<id>`, the id quoted as stripe-python's services quote it."""
        path = f"/v1/{resource}/{quote_plus(object_id)}"
        return self._get(
            operation, self._raw_get, path, params=params, stripe_account=stripe_account
        )

    def _post(
        self,
        operation: str,
        fn: Callable[..., Any],
        *args: Any,
        params: Mapping[str, Any],
        idempotency_key: str,
    ) -> dict[str, Any]:
        options = {"idempotency_key": _check_key(idempotency_key)}
        return self._call(operation, fn, *args, write=True, params=params, options=options)

    def _get(
        self,
        operation: str,
        fn: Callable[..., Any],
        *args: Any,
        params: Mapping[str, Any] | None = None,
        stripe_account: str | None = None,
    ) -> dict[str, Any]:
        options = {"stripe_account": stripe_account} if stripe_account else None
        return self._call(operation, fn, *args, write=False, params=params, options=options)

    def _list(
        self,
        operation: str,
        fn: Callable[..., Any],
        params: Mapping[str, Any],
        *,
        stripe_account: str | None = None,
    ) -> Iterator[dict[str, Any]]:
        """Auto-paging, one `_call` per page (so every page is guarded and mapped)."""
        page_params = dict(params)
        while True:
            page = self._get(operation, fn, params=page_params, stripe_account=stripe_account)
            data = page.get("data") or []
            yield from data
            if not page.get("has_more") or not data:
                return
            page_params["starting_after"] = data[-1]["id"]

    # --- payment intents and charges ---
    def payment_intent_create(
        self,
        *,
        amount: int,
        asset: str,
        idempotency_key: str,
        metadata: dict,
        transfer_group: str | None = None,
        customer: str | None = None,
        payment_method: str | None = None,
        confirm: bool = False,
        payment_method_types: Sequence[str] | None = None,
    ) -> dict[str, Any]:
        _positive(amount)
        stripe_amount, currency = to_stripe_amount(amount, asset)
        params = _compact(
            {
                "amount": stripe_amount,
                "currency": currency,
                "capture_method": CAPTURE_METHOD,
                "metadata": _metadata(metadata),
                "transfer_group": transfer_group,
                "customer": customer,
                "payment_method": payment_method,
                "confirm": True if confirm else None,
                "payment_method_types": list(payment_method_types)
                if payment_method_types
                else None,
            }
        )
        # every order's create: the raw POST spares building the stripe object (~0.25 ms)
        return self._post(
            "payment_intent_create",
            self._raw_post,
            "/v1/payment_intents",
            params=params,
            idempotency_key=idempotency_key,
        )

    def payment_intent_confirm(
        self, *, payment_intent_id: str, payment_method: str | None, idempotency_key: str
    ) -> dict[str, Any]:
        return self._post(
            "payment_intent_confirm",
            self.v1.payment_intents.confirm,
            payment_intent_id,
            params=_compact({"payment_method": payment_method}),
            idempotency_key=idempotency_key,
        )

    def payment_intent_retrieve(
        self, payment_intent_id: str, *, expand: Sequence[str] = ()
    ) -> dict[str, Any]:
        return self._retrieve(
            "payment_intent_retrieve",
            "payment_intents",
            payment_intent_id,
            params=_compact({"expand": list(expand) or None}),
        )

    def payment_intent_cancel(
        self, *, payment_intent_id: str, idempotency_key: str, reason: str | None = None
    ) -> dict[str, Any]:
        """Cancel a PaymentIntent that has not succeeded (`reason`: Stripe's
        `cancellation_reason`). A PaymentIntent that already succeeded (or is processing, or
        is canceled) cannot be: Stripe answers 400 `payment_intent_unexpected_state`
        (InvalidRequest with that `stripe_code`); look it up to learn why."""
        if reason is not None and reason not in PAYMENT_INTENT_CANCEL_REASONS:
            raise ValueError(
                f"cancellation reason must be one of {sorted(PAYMENT_INTENT_CANCEL_REASONS)}, "
                f"got {reason!r}"
            )
        return self._post(
            "payment_intent_cancel",
            self.v1.payment_intents.cancel,
            payment_intent_id,
            params=_compact({"cancellation_reason": reason}),
            idempotency_key=idempotency_key,
        )

    def charge_retrieve(
        self, charge_id: str, *, expand: Sequence[str] = ("balance_transaction",)
    ) -> dict[str, Any]:
        return self._retrieve(
            "charge_retrieve",
            "charges",
            charge_id,
            params=_compact({"expand": list(expand) or None}),
        )

    # --- refunds and disputes ---
    def refund_create(
        self,
        *,
        charge_id: str | None = None,
        payment_intent_id: str | None = None,
        amount: int,
        asset: str,
        idempotency_key: str,
        metadata: dict,
        reason: str | None = None,
    ) -> dict[str, Any]:
        if (charge_id is None) == (payment_intent_id is None):
            raise ValueError("refund_create needs exactly one of charge_id or payment_intent_id")
        _positive(amount)
        stripe_amount, currency = to_stripe_amount(amount, asset)
        # Stripe's refund has no currency parameter: it is the charge's. We still convert, to
        # refuse an asset whose scale would silently change the amount's meaning.
        del currency
        params = _compact(
            {
                "charge": charge_id,
                "payment_intent": payment_intent_id,
                "amount": stripe_amount,
                "metadata": _metadata(metadata),
                "reason": reason,
            }
        )
        return self._post(
            "refund_create",
            self.v1.refunds.create,
            params=params,
            idempotency_key=idempotency_key,
        )

    def refund_retrieve(self, refund_id: str) -> dict[str, Any]:
        return self._retrieve("refund_retrieve", "refunds", refund_id)

    def refunds_for_charge(self, charge_id: str) -> list[dict[str, Any]]:
        """Every refund of a charge. `charge.refunds` is not in charge payloads (nor in the
        API's answer unless expanded) since 2022-11-15: list them instead."""
        return list(
            self._list("refunds_list", self.v1.refunds.list, {"charge": charge_id, "limit": 100})
        )

    def dispute_retrieve(self, dispute_id: str) -> dict[str, Any]:
        return self._retrieve("dispute_retrieve", "disputes", dispute_id)

    # --- transfers (Connect, separate charges and transfers) ---
    def transfer_create(
        self,
        *,
        amount: int,
        asset: str,
        destination: str,
        idempotency_key: str,
        transfer_group: str | None,
        metadata: dict,
        source_transaction: str | None = None,
    ) -> dict[str, Any]:
        _positive(amount)
        stripe_amount, currency = to_stripe_amount(amount, asset)
        params = _compact(
            {
                "amount": stripe_amount,
                "currency": currency,
                "destination": destination,
                "transfer_group": transfer_group,
                "metadata": _metadata(metadata),
                "source_transaction": source_transaction,
            }
        )
        return self._post(
            "transfer_create",
            self.v1.transfers.create,
            params=params,
            idempotency_key=idempotency_key,
        )

    def transfer_retrieve(self, transfer_id: str) -> dict[str, Any]:
        return self._get("transfer_retrieve", self.v1.transfers.retrieve, transfer_id)

    def transfer_reversal_create(
        self,
        *,
        transfer_id: str,
        amount: int | None,
        asset: str,
        idempotency_key: str,
        metadata: dict,
    ) -> dict[str, Any]:
        """Reverse a transfer (`amount` None: all that is not reversed yet), pulling the money
        back from the connected account's balance. Returns the `trr_` reversal; Stripe then
        sends `transfer.reversed` for the transfer. Refused (InvalidRequest) when the
        connected account's available balance cannot cover it (`balance_insufficient`) or the
        transfer is already fully reversed."""
        if amount is not None:
            _positive(amount)
        # Like a refund, a reversal has no currency parameter (it is the transfer's); the
        # conversion still refuses an asset whose scale would change the amount's meaning.
        stripe_amount, _currency = to_stripe_amount(0 if amount is None else amount, asset)
        params = _compact(
            {
                "amount": None if amount is None else stripe_amount,
                "metadata": _metadata(metadata),
            }
        )
        return self._post(
            "transfer_reversal_create",
            self.v1.transfers.reversals.create,
            transfer_id,
            params=params,
            idempotency_key=idempotency_key,
        )

    def transfers_find(
        self,
        *,
        transfer_group: str | None = None,
        metadata_key: str | None = None,
        metadata_value: str | None = None,
        created_gte: int | None = None,
    ) -> list[dict[str, Any]]:
        """Transfers matching a group and/or a metadata pair: the lookup after OutcomeUnknown.

        Stripe filters by `transfer_group` and `created`; the metadata match is done here.
        """
        if transfer_group is None and metadata_key is None and created_gte is None:
            raise ValueError("transfers_find needs at least one filter")
        params = _compact(
            {
                "limit": 100,
                "transfer_group": transfer_group,
                "created": {"gte": created_gte} if created_gte is not None else None,
            }
        )
        found = []
        for transfer in self._list("transfers_list", self.v1.transfers.list, params):
            if metadata_key is not None:
                value = (transfer.get("metadata") or {}).get(metadata_key)
                if value is None or (metadata_value is not None and value != metadata_value):
                    continue
            found.append(transfer)
        return found

    # --- balance ---
    def balance_transactions_iter(
        self,
        *,
        created_gte: int,
        created_lt: int,
        expand_source: bool = True,
        page_size: int = 100,
        payout: str | None = None,
        stripe_account: str | None = None,
    ) -> Iterator[dict[str, Any]]:
        """Every balance transaction created in [created_gte, created_lt), newest first."""
        params = _compact(
            {
                "created": {"gte": created_gte, "lt": created_lt},
                "limit": max(1, min(page_size, 100)),
                "expand": ["data.source"] if expand_source else None,
                "payout": payout,
            }
        )
        return self._list(
            "balance_transactions_list",
            self.v1.balance_transactions.list,
            params,
            stripe_account=stripe_account,
        )

    def balance_transaction_retrieve(
        self, txn_id: str, *, stripe_account: str | None = None
    ) -> dict[str, Any]:
        return self._get(
            "balance_transaction_retrieve",
            self.v1.balance_transactions.retrieve,
            txn_id,
            stripe_account=stripe_account,
        )

    def balance_retrieve(self, *, stripe_account: str | None = None) -> dict[str, Any]:
        return self._get(
            "balance_retrieve", self.v1.balance.retrieve, stripe_account=stripe_account
        )

    # --- events ---
    def events_iter(
        self,
        *,
        created_gte: int,
        types: Sequence[str] | None = None,
        delivery_success: bool | None = None,
        stripe_account: str | None = None,
    ) -> Iterator[dict[str, Any]]:
        """Events created at or after `created_gte` (Stripe keeps 30 days), newest first."""
        params = _compact(
            {
                "created": {"gte": created_gte},
                "limit": 100,
                "types": list(types) if types else None,
                "delivery_success": delivery_success,
            }
        )
        return self._list("events_list", self.v1.events.list, params, stripe_account=stripe_account)

    def event_retrieve(self, event_id: str, *, stripe_account: str | None = None) -> dict:
        return self._get(
            "event_retrieve", self.v1.events.retrieve, event_id, stripe_account=stripe_account
        )

    # --- accounts, customers, top-ups ---
    def account_create(
        self, *, idempotency_key: str, email: str | None = None, metadata: dict | None = None
    ) -> dict[str, Any]:
        """An Express connected account (restaurant or rider) that can receive transfers."""
        params = _compact(
            {
                "type": "express",
                "email": email,
                "metadata": _metadata(metadata),
                "capabilities": {"transfers": {"requested": True}},
            }
        )
        return self._post(
            "account_create",
            self.v1.accounts.create,
            params=params,
            idempotency_key=idempotency_key,
        )

    def customer_create(
        self, *, idempotency_key: str, email: str | None = None, metadata: dict | None = None
    ) -> dict[str, Any]:
        params = _compact({"email": email, "metadata": _metadata(metadata)})
        return self._post(
            "customer_create",
            self.v1.customers.create,
            params=params,
            idempotency_key=idempotency_key,
        )

    def topup_create(
        self, *, amount: int, asset: str, idempotency_key: str, description: str | None = None
    ) -> dict[str, Any]:
        _positive(amount)
        stripe_amount, currency = to_stripe_amount(amount, asset)
        params = _compact(
            {"amount": stripe_amount, "currency": currency, "description": description}
        )
        return self._post(
            "topup_create",
            self.v1.topups.create,
            params=params,
            idempotency_key=idempotency_key,
        )

    def topup_retrieve(self, topup_id: str) -> dict[str, Any]:
        return self._retrieve("topup_retrieve", "topups", topup_id)

    # --- webhook endpoints (the `stripe_webhooks` command) ---
    def webhook_endpoints_list(self) -> list[dict[str, Any]]:
        return list(
            self._list("webhook_endpoints_list", self.v1.webhook_endpoints.list, {"limit": 100})
        )

    def webhook_endpoint_create(
        self,
        *,
        url: str,
        enabled_events: Sequence[str],
        connect: bool,
        description: str,
        metadata: dict[str, str],
        idempotency_key: str,
    ) -> dict[str, Any]:
        """Create an endpoint at the pinned API version (its answer holds the `secret`)."""
        return self._post(
            "webhook_endpoint_create",
            self.v1.webhook_endpoints.create,
            params={
                "url": url,
                "enabled_events": list(enabled_events),
                "connect": connect,
                "api_version": PINNED_API_VERSION,
                "description": description,
                "metadata": metadata,
            },
            idempotency_key=idempotency_key,
        )

    def webhook_endpoint_update(
        self, endpoint_id: str, *, enabled_events: Sequence[str], idempotency_key: str
    ) -> dict[str, Any]:
        """Replace an endpoint's event list (Stripe cannot change an endpoint's api_version:
        an endpoint at another version must be recreated)."""
        return self._post(
            "webhook_endpoint_update",
            self.v1.webhook_endpoints.update,
            endpoint_id,
            params={"enabled_events": list(enabled_events)},
            idempotency_key=idempotency_key,
        )


# --- error mapping --------------------------------------------------------------------------
def _map_error(exc: stripe.StripeError, *, operation: str, write: bool) -> PaymentProviderError:
    error_object = getattr(exc, "error", None)
    stripe_code = exc.code or getattr(error_object, "code", None)
    common: dict[str, Any] = {
        "operation": operation,
        "stripe_code": stripe_code,
        "param": getattr(exc, "param", None),
        "provider_status": exc.http_status,
        "request_id": exc.request_id,
    }
    message = exc.user_message or str(exc) or exc.__class__.__name__
    if isinstance(exc, stripe.CardError):
        decline = getattr(error_object, "decline_code", None)
        return CardDeclined(message, extra={"decline_code": decline} if decline else None, **common)
    if isinstance(exc, stripe.IdempotencyError):
        return InvalidRequest(message, code="provider_idempotency_error", **common)
    if isinstance(exc, stripe.InvalidRequestError):
        if exc.http_status == 404:
            return ProviderObjectNotFound(message, **common)
        return InvalidRequest(message, **common)
    if isinstance(exc, stripe.AuthenticationError | stripe.PermissionError):
        logger.error("Stripe rejected our credentials on %s: %s", operation, message)
        return ProviderConfigurationError(message, **common)
    if isinstance(exc, stripe.RateLimitError):
        return ProviderUnavailable(message, **common)
    if isinstance(exc, stripe.APIConnectionError | stripe.APIError):
        # A timeout, a reset connection, a 5xx or a 409 (concurrent request with the same
        # key): a write may have happened; a read simply failed.
        if write:
            return OutcomeUnknown(message, **common)
        return ProviderUnavailable(message, **common)
    return PaymentProviderError(message, **common)


# --- construction from settings -------------------------------------------------------------
_gateways: dict[tuple[Any, ...], StripeGateway] = {}
_gateways_lock = threading.Lock()


def get_gateway() -> StripeGateway:
    """The gateway configured from settings (cached per distinct configuration)."""
    key = (
        settings.STRIPE_API_KEY,
        conf.get("STRIPE_API_BASE"),
        float(conf.get("STRIPE_TIMEOUT")),
        int(conf.get("STRIPE_MAX_NETWORK_RETRIES")),
        str(conf.get("STRIPE_HTTP_CLIENT")),
    )
    gateway = _gateways.get(key)
    if gateway is None:
        with _gateways_lock:
            gateway = _gateways.get(key)
            if gateway is None:
                gateway = StripeGateway(
                    api_key=key[0],
                    api_base=key[1],
                    timeout=key[2],
                    max_network_retries=key[3],
                    http_client=key[4],
                )
                _gateways[key] = gateway
    return gateway
