"""The webhook endpoints at Stripe: which events each must receive, and bringing them in line.

The required lists are computed from the handler table (`stripe_gateway.registry.HANDLERS`):
an event a handler needs but an endpoint does not send is a silent hole (Stripe only sends
what `enabled_events` lists), and an event sent but not handled is noise; so is one handled
but registered with `subscribe=False` (it repeats what a subscribed event says: each is a
delivery to receive, store and process for nothing). Two endpoints:

- platform (`connect=false`): the platform's own objects: payments, refunds, disputes,
  transfers, top-ups;
- Connect (`connect=true`): events of connected accounts (they carry `account`): the
  restaurants' and riders' own payouts.

Both are created at the pinned API version (`client.PINNED_API_VERSION`), so that payloads
have the shapes the handlers read. An endpoint is recognised by `metadata[eats_endpoint]`
("platform" or "connect") or, failing that, by its URL.

Must not import: any domain app (the handlers are registered by the apps at start-up).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from stripe_gateway.client import PINNED_API_VERSION, StripeGateway
from stripe_gateway.registry import HANDLERS

Role = Literal["platform", "connect"]
ROLE_KEY = "eats_endpoint"


def required_events(*, connect: bool) -> list[str]:
    """The event types the handlers need on that endpoint, sorted."""
    return sorted(t for t, reg in HANDLERS.items() if reg.connect == connect and reg.subscribe)


@dataclass
class EndpointReport:
    role: Role
    url: str
    endpoint_id: str = ""
    action: str = ""  # created | updated | unchanged | recreate | absent | ok | wrong
    missing: list[str] = field(default_factory=list)
    extra: list[str] = field(default_factory=list)
    api_version: str = ""
    secret_path: str = ""

    @property
    def ok(self) -> bool:
        return (
            not self.missing and self.api_version == PINNED_API_VERSION and bool(self.endpoint_id)
        )


def _find(existing: list[dict[str, Any]], role: Role, url: str) -> dict[str, Any] | None:
    for endpoint in existing:
        if (endpoint.get("metadata") or {}).get(ROLE_KEY) == role:
            return endpoint
    for endpoint in existing:
        if endpoint.get("url") == url:
            return endpoint
    return None


def _compare(report: EndpointReport, endpoint: dict[str, Any], required: list[str]) -> None:
    enabled = set(endpoint.get("enabled_events") or [])
    report.endpoint_id = str(endpoint["id"])
    report.api_version = str(endpoint.get("api_version") or "")
    report.missing = [] if "*" in enabled else [e for e in required if e not in enabled]
    report.extra = sorted(enabled - set(required) - {"*"})


def endpoints_check(*, gateway: StripeGateway, urls: dict[Role, str]) -> list[EndpointReport]:
    """Compare the endpoints at Stripe with what the handlers need (no change is made)."""
    existing = gateway.webhook_endpoints_list()
    reports = []
    for role, url in urls.items():
        report = EndpointReport(role=role, url=url)
        endpoint = _find(existing, role, url)
        if endpoint is None:
            report.action = "absent"
            report.missing = required_events(connect=role == "connect")
        else:
            _compare(report, endpoint, required_events(connect=role == "connect"))
            report.action = "ok" if report.ok else "wrong"
        reports.append(report)
    return reports


def endpoints_setup(
    *, gateway: StripeGateway, urls: dict[Role, str], secret_dir: Path
) -> list[EndpointReport]:
    """Create the endpoints that do not exist and set exactly the required events on the
    others. A new endpoint's signing secret (shown by Stripe only once) is written to
    `<secret_dir>/<role>.whsec` (mode 0600) for the operator to store where the app reads
    STRIPE_WEBHOOK_SECRET. An endpoint at another API version cannot be changed: a new one
    is created beside it (`recreate`); delete the old one once the new secret is deployed."""
    existing = gateway.webhook_endpoints_list()
    reports = []
    for role, url in urls.items():
        required = required_events(connect=role == "connect")
        report = EndpointReport(role=role, url=url)
        endpoint = _find(existing, role, url)
        if endpoint is not None and endpoint.get("api_version") == PINNED_API_VERSION:
            _compare(report, endpoint, required)
            if report.missing or report.extra:
                updated = gateway.webhook_endpoint_update(
                    report.endpoint_id,
                    enabled_events=required,
                    idempotency_key=f"webhook-endpoint:{report.endpoint_id}:{'|'.join(required)}"[
                        :255
                    ],
                )
                _compare(report, updated, required)
                report.action = "updated"
            else:
                report.action = "unchanged"
        else:
            created = gateway.webhook_endpoint_create(
                url=url,
                enabled_events=required,
                connect=role == "connect",
                description=f"eats {role} endpoint",
                metadata={ROLE_KEY: role},
                idempotency_key=f"webhook-endpoint:{role}:{url}:{PINNED_API_VERSION}"[:255],
            )
            _compare(report, created, required)
            report.action = "created" if endpoint is None else "recreate"
            secret = str(created.get("secret") or "")
            if secret:
                secret_dir.mkdir(parents=True, exist_ok=True)
                path = secret_dir / f"{role}.whsec"
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
                with os.fdopen(fd, "w") as handle:
                    handle.write(secret + "\n")
                report.secret_path = str(path)
        reports.append(report)
    return reports
