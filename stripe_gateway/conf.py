"""Stripe gateway settings: declared here (name, default, meaning), read from the environment
once by config/settings.py (`config.knobs`); the code reads them through `get`.
The keys and secrets (STRIPE_API_KEY, STRIPE_WEBHOOK_SECRET) are read there too.

STRIPE_API_BASE              point the real `stripe` client elsewhere (the local emulator)
STRIPE_TIMEOUT               seconds per Stripe HTTP call (20)
STRIPE_MAX_NETWORK_RETRIES   the SDK's own retries of a failed connection (2)
STRIPE_HTTP_CLIENT           the SDK's HTTP transport: "urllib3" (default, a third less client
                             CPU per call) or "requests" (the SDK's own; what `responses`,
                             the tests' Stripe double, intercepts)
STRIPE_WEBHOOK_TOLERANCE     accepted age (past or future) of a webhook's timestamp, s (300)
STRIPE_WEBHOOK_MAX_BODY      largest webhook body accepted, bytes (262144)
STRIPE_FORBID_IN_ATOMIC      a Stripe call inside an open DB transaction raises instead of
                             being logged as an error (on when DJANGO_ENV=test)
STRIPE_EVENTS_MAX_ATTEMPTS   processing attempts of an inbox row before `failed` for good (10)
STRIPE_EVENTS_DEFER_HORIZON  a DEFERRED row (waiting for data Stripe has not delivered yet, e.g.
                             an event before the one it depends on) is retried, with backoff
                             after its first STRIPE_EVENTS_MAX_ATTEMPTS tries, until it is this
                             old: Stripe retries a webhook for up to 3 days (259200)
STRIPE_EVENTS_BACKOFF_BASE   retry backoff: base * 2**(attempt-1) seconds (30) ...
STRIPE_EVENTS_BACKOFF_MAX    ... capped at this (3600)
STRIPE_EVENTS_LEASE          how long a claimed row belongs to its worker, seconds (300)
STRIPE_EVENTS_SWEEP_GRACE    a `received` row is re-driven by the sweeper after this (60)
STRIPE_EVENTS_SWEEP_BATCH    rows one sweep re-drives at most (500)
STRIPE_EVENTS_QUEUE          the Celery queue of the processing tasks ("celery")
STRIPE_EVENTS_DRAINS         drain tasks a burst of new events is coalesced into (4): a new
                             event publishes a drain only if none of its slot is waiting to
                             start; a drain processes every new event it can claim. 0: one
                             task per event. Set it to at least the workers' total concurrency
STRIPE_EVENTS_DRAIN_BATCH    events one drain processes before it hands over to a new one (200)
STRIPE_EVENTS_DRAIN_SECONDS  ... or once it has run this long, seconds (10)
STRIPE_EVENTS_DRAIN_LINGER   how long a drain that finds no new row keeps looking (polling with
                             a growing pause, 2 ms to 25 ms) before it ends, seconds (0.2): under
                             a steady flow the drains keep running instead of ending and being
                             published again between two events. 0: it ends at once
STRIPE_EVENTS_DRAIN_GATE_TTL how long a slot's gate stays closed if its drain never starts
                             (a lost message), seconds (15)
"""

from typing import Any

from django.conf import settings

from config.knobs import Knob, knobs_defaults

KNOBS: dict[str, Knob] = {
    "STRIPE_API_BASE": Knob("https://api.stripe.com", "str", "Stripe API base URL"),
    "STRIPE_TIMEOUT": Knob(20.0, "float", "seconds per Stripe call"),
    "STRIPE_MAX_NETWORK_RETRIES": Knob(2, "int", "SDK retries"),
    "STRIPE_HTTP_CLIENT": Knob("urllib3", "str", "the SDK's HTTP transport: urllib3 or requests"),
    "STRIPE_WEBHOOK_TOLERANCE": Knob(300, "int", "webhook timestamp tolerance, seconds"),
    "STRIPE_WEBHOOK_MAX_BODY": Knob(256 * 1024, "int", "largest webhook body, bytes"),
    "STRIPE_EVENTS_MAX_ATTEMPTS": Knob(10, "int", "attempts before failed for good"),
    "STRIPE_EVENTS_DEFER_HORIZON": Knob(3 * 86400.0, "float", "deferred rows retried for, s"),
    "STRIPE_EVENTS_BACKOFF_BASE": Knob(30.0, "float", "retry backoff base, seconds"),
    "STRIPE_EVENTS_BACKOFF_MAX": Knob(3600.0, "float", "retry backoff cap, seconds"),
    "STRIPE_EVENTS_LEASE": Knob(300.0, "float", "lease of a claimed row, seconds"),
    "STRIPE_EVENTS_SWEEP_GRACE": Knob(60.0, "float", "re-drive received rows after, seconds"),
    "STRIPE_EVENTS_SWEEP_BATCH": Knob(500, "int", "rows one sweep re-drives"),
    "STRIPE_EVENTS_QUEUE": Knob("celery", "str", "Celery queue of the processing tasks"),
    "STRIPE_EVENTS_DRAINS": Knob(4, "int", "drain slots new events coalesce into (0: off)"),
    "STRIPE_EVENTS_DRAIN_BATCH": Knob(200, "int", "events one drain processes"),
    "STRIPE_EVENTS_DRAIN_SECONDS": Knob(10.0, "float", "a drain hands over after, seconds"),
    "STRIPE_EVENTS_DRAIN_LINGER": Knob(0.2, "float", "an idle drain keeps looking, seconds"),
    "STRIPE_EVENTS_DRAIN_GATE_TTL": Knob(15.0, "float", "a drain gate's expiry, seconds"),
}
DEFAULTS: dict[str, Any] = knobs_defaults(KNOBS)

# STRIPE_HTTP_CLIENT's values (stripe_gateway.client: `_Urllib3Client`, `_HttpClient`)
HTTP_CLIENTS = ("urllib3", "requests")


def get(name: str) -> Any:
    return getattr(settings, name, DEFAULTS[name])


def validate() -> None:
    """Refuse at start-up a setting the gateway could only refuse at its first Stripe call."""
    from django.core.exceptions import ImproperlyConfigured

    transport = get("STRIPE_HTTP_CLIENT")
    if transport not in HTTP_CLIENTS:
        raise ImproperlyConfigured(
            f"STRIPE_HTTP_CLIENT must be one of {', '.join(HTTP_CLIENTS)}, not {transport!r}"
        )
