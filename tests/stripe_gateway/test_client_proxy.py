"""Both of the gateway's HTTP transports (urllib3, the default, and the cut-down `requests`
session) go through the proxy the environment names (read when the gateway is built), end to
end over loopback: a stand-in proxy receives the absolute-URI request and answers it."""

from __future__ import annotations

from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler

import pytest

from stripe_gateway.client import StripeGateway
from tests.stripe_gateway.loopback import answer_json, serving


class _Proxy(BaseHTTPRequestHandler):
    seen: list[tuple[str, str]] = []

    def do_GET(self) -> None:
        self.seen.append((self.path, self.headers.get("Authorization", "")))
        answer_json(self, {"object": "balance", "available": [], "pending": []})

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def proxy() -> Iterator[str]:
    _Proxy.seen = []
    with serving(_Proxy) as url:
        yield url


@pytest.mark.parametrize("http_client", ["urllib3", "requests"])
def test_a_call_goes_through_the_proxy_the_environment_names(
    proxy: str, monkeypatch: pytest.MonkeyPatch, http_client: str
) -> None:
    # given: an API address only the proxy "reaches", and the proxy in the environment
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY"):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.lower(), raising=False)
    monkeypatch.setenv("HTTP_PROXY", proxy)
    gateway = StripeGateway(
        api_key="sk_test_proxy",
        api_base="http://api.stripe.invalid",
        max_network_retries=0,
        http_client=http_client,
    )

    # when
    balance = gateway.balance_retrieve()

    # then: the proxy got the absolute URI with the key, and its answer came back
    assert balance["object"] == "balance"
    assert _Proxy.seen == [("http://api.stripe.invalid/v1/balance", "Bearer sk_test_proxy")]
