"""POST /webhooks/stripe/: signatures, tolerance, rotation, bodies, storing once."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest
from django.test import Client, RequestFactory

from stripe_gateway import services
from stripe_gateway.models import StripeEvent
from stripe_gateway.views import stripe_webhook
from tests.marketplace.helpers import (
    OLD_SECRET,
    SECRET,
    WEBHOOK_URL,
    deliver,
    encode,
    make_event,
    post,
    signed,
    stripe_object,
)

pytestmark = pytest.mark.django_db


@pytest.fixture
def scheduled(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Record what the view schedules instead of running it."""
    calls: list[str] = []
    monkeypatch.setattr(services, "event_schedule", calls.append)
    return calls


def assert_refused(response: Any, status: int, code: str) -> None:
    assert response.status_code == status, response.content
    assert response.json()["code"] == code
    assert isinstance(response.json()["message"], str)
    assert StripeEvent.objects.count() == 0


# --- the happy path ------------------------------------------------------------------------
def test_a_signed_event_is_stored_once_and_answered_200(
    client: Client, scheduled: list[str], django_capture_on_commit_callbacks: Any
) -> None:
    # given
    event = make_event("payment_intent.succeeded", account="acct_1PgafTB7WZ01zgkW")

    # when
    with django_capture_on_commit_callbacks(execute=True):
        response = deliver(client, event)

    # then
    assert response.status_code == 200
    assert response.json() == {"received": True, "duplicate": False}
    row = StripeEvent.objects.get()
    assert row.stripe_id == event["id"]
    assert row.type == "payment_intent.succeeded"
    assert row.account == "acct_1PgafTB7WZ01zgkW"
    assert row.api_version == "2024-06-20"
    assert row.livemode is False
    assert int(row.created.timestamp()) == event["created"]
    assert row.payload == event
    assert row.status == StripeEvent.Status.RECEIVED
    assert row.attempts == 0
    assert row.next_attempt_at is not None and row.next_attempt_at > row.received_at
    assert scheduled == [event["id"]]


def test_a_duplicate_delivery_is_200_and_nothing_else(
    client: Client, scheduled: list[str], django_capture_on_commit_callbacks: Any
) -> None:
    # given: an event already delivered
    event = make_event()
    with django_capture_on_commit_callbacks(execute=True):
        assert deliver(client, event).status_code == 200
    before = StripeEvent.objects.values().get()

    # when: Stripe delivers it again (new timestamp and signature, same body)
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        response = deliver(client, event)

    # then
    assert response.status_code == 200
    assert response.json() == {"received": True, "duplicate": True}
    assert StripeEvent.objects.values().get() == before
    assert callbacks == []
    assert scheduled == [event["id"]]


def test_an_unknown_event_type_is_stored_and_ignored(client: Client) -> None:
    # given: processing runs eagerly (autouse fixture) in a transactional-free test client
    event = make_event("plan.created", stripe_object("event")["data"]["object"])

    # when
    response = deliver(client, event)
    services.event_process(event_id=event["id"])  # on_commit does not fire inside the test tx

    # then
    assert response.status_code == 200
    row = StripeEvent.objects.get()
    assert row.status == StripeEvent.Status.IGNORED
    assert row.processed_at is not None
    assert row.next_attempt_at is None


# --- signatures ------------------------------------------------------------------------------
def test_a_wrong_signature_is_400_and_writes_nothing(client: Client) -> None:
    body = encode(make_event())
    assert_refused(
        post(client, body, signed(body, "whsec_someone_else")), 400, "signature_mismatch"
    )


def test_a_tampered_body_is_400(client: Client) -> None:
    event = make_event()
    header = signed(encode(event))
    event["data"]["object"]["amount"] = 1
    assert_refused(post(client, encode(event), header), 400, "signature_mismatch")


def test_re_serialised_json_does_not_verify(client: Client) -> None:
    event = make_event()
    header = signed(json.dumps(event, indent=2).encode())
    assert_refused(post(client, encode(event), header), 400, "signature_mismatch")


def test_a_missing_signature_header_is_400(client: Client) -> None:
    assert_refused(post(client, encode(make_event()), None), 400, "signature_missing")


@pytest.mark.parametrize(
    "header",
    ["garbage", "t=abc,v1=00", "v1=deadbeef", "t=,v1=00", "t=123", "t=123,v0=abc", ",,,", "t"],
)
def test_a_malformed_signature_header_is_400(client: Client, header: str) -> None:
    assert_refused(post(client, encode(make_event()), header), 400, "signature_malformed")


def test_a_stale_timestamp_is_400(client: Client) -> None:
    body = encode(make_event())
    header = signed(body, timestamp=int(time.time()) - 301)
    assert_refused(post(client, body, header), 400, "timestamp_outside_tolerance")


def test_a_future_timestamp_is_400_too(client: Client) -> None:
    # stripe-python accepts this one; we do not
    body = encode(make_event())
    header = signed(body, timestamp=int(time.time()) + 301)
    assert_refused(post(client, body, header), 400, "timestamp_outside_tolerance")


@pytest.mark.parametrize("skew", [-290, 290])
def test_a_timestamp_inside_the_tolerance_is_accepted(client: Client, skew: int) -> None:
    body = encode(make_event())
    response = post(client, body, signed(body, timestamp=int(time.time()) + skew))
    assert response.status_code == 200


def test_the_tolerance_comes_from_settings(client: Client, settings: Any) -> None:
    settings.STRIPE_WEBHOOK_TOLERANCE = 30
    body = encode(make_event())
    header = signed(body, timestamp=int(time.time()) - 60)
    assert_refused(post(client, body, header), 400, "timestamp_outside_tolerance")


def test_every_configured_secret_is_accepted_during_a_rotation(client: Client) -> None:
    # given: the old secret signs one event, the new one another
    old, new = make_event(), make_event()

    # when
    responses = [
        post(client, encode(old), signed(encode(old), OLD_SECRET)),
        post(client, encode(new), signed(encode(new), SECRET)),
    ]

    # then
    assert [r.status_code for r in responses] == [200, 200]
    assert StripeEvent.objects.count() == 2


def test_a_header_with_one_v1_per_secret_is_accepted_if_any_matches(client: Client) -> None:
    # Stripe signs with every active secret during a roll: one of them is unknown to us
    body = encode(make_event())
    header = signed(body, "whsec_new_one_we_do_not_have_yet", SECRET)
    assert header.count("v1=") == 2
    assert post(client, body, header).status_code == 200


def test_a_retired_secret_is_refused(client: Client, settings: Any) -> None:
    settings.STRIPE_WEBHOOK_SECRETS = [SECRET]
    body = encode(make_event())
    assert_refused(post(client, body, signed(body, OLD_SECRET)), 400, "signature_mismatch")


def test_no_configured_secret_refuses_everything(client: Client, settings: Any) -> None:
    settings.STRIPE_WEBHOOK_SECRETS = ["", "  "]
    body = encode(make_event())
    assert_refused(post(client, body, signed(body, "")), 400, "webhook_not_configured")


# --- bodies ----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "body",
    [
        b"{not json",
        b" ",
        b"\xff\xfe\x00{}",
        b'{"id": NaN}',
        b'{"amount": 1e999}',
        b"[" * 5000 + b"]" * 5000,
        b'{"a":' * 100 + b"1" + b"}" * 100,
    ],
)
def test_malformed_json_under_a_valid_signature_is_400(client: Client, body: bytes) -> None:
    assert_refused(post(client, body, signed(body)), 400, "malformed_json")


@pytest.mark.parametrize(
    "mutate",
    [
        lambda e: [e],
        lambda e: "just a string",
        lambda e: e | {"id": "ch_123"},
        lambda e: e | {"id": 123},
        lambda e: {k: v for k, v in e.items() if k != "type"},
        lambda e: e | {"type": ""},
        lambda e: e | {"data": {}},
        lambda e: e | {"data": {"object": "pi_1"}},
        lambda e: e | {"created": "yesterday"},
        lambda e: e | {"created": 10**20},
        lambda e: e | {"livemode": "false"},
        lambda e: e | {"object": "charge"},
        lambda e: e | {"account": 12},
        lambda e: e | {"type": "x" * 300},
        lambda e: e | {"id": "evt_\u0000nul"},
    ],
)
def test_a_signed_body_that_is_not_an_event_is_400(client: Client, mutate: Any) -> None:
    body = json.dumps(mutate(make_event())).encode()
    assert_refused(post(client, body, signed(body)), 400, "invalid_event")


@pytest.mark.parametrize("nasty", ["\u0000", "\ud800"])
def test_strings_the_database_cannot_store_are_400_not_500(client: Client, nasty: str) -> None:
    event = make_event()
    event["data"]["object"]["description"] = f"a{nasty}b"
    body = json.dumps(event).encode()
    assert_refused(post(client, body, signed(body)), 400, "invalid_event")


def test_an_oversized_body_is_413_before_verifying_anything(client: Client, settings: Any) -> None:
    # given: a validly signed event over the limit
    event = make_event()
    event["data"]["object"]["description"] = "x" * settings.STRIPE_WEBHOOK_MAX_BODY
    body = encode(event)

    # when / then
    assert_refused(post(client, body, signed(body)), 413, "payload_too_large")


def test_a_body_exactly_at_the_limit_is_accepted(client: Client, settings: Any) -> None:
    event = make_event()
    event["data"]["object"]["description"] = ""
    padding = settings.STRIPE_WEBHOOK_MAX_BODY - len(encode(event))
    event["data"]["object"]["description"] = "x" * padding
    body = encode(event)
    assert len(body) == settings.STRIPE_WEBHOOK_MAX_BODY
    assert post(client, body, signed(body)).status_code == 200


def test_an_understated_content_length_cannot_smuggle_a_larger_body(settings: Any) -> None:
    # given: a request whose stream holds more than Content-Length says (the view reads
    # Content-Length bytes at most, so the signature cannot match the truncated body)
    body = encode(make_event())
    request = RequestFactory().generic(
        "POST",
        WEBHOOK_URL,
        body,
        content_type="application/json",
        HTTP_STRIPE_SIGNATURE=signed(body),
        CONTENT_LENGTH=str(len(body) - 10),
    )

    # when
    response = stripe_webhook(request)

    # then
    assert response.status_code == 400
    assert StripeEvent.objects.count() == 0


@pytest.mark.parametrize(
    ("length", "status", "code"),
    [
        (None, 411, "length_required"),
        ("", 411, "length_required"),
        ("abc", 400, "invalid_content_length"),
        ("-1", 400, "invalid_content_length"),
        ("999999999", 413, "payload_too_large"),
    ],
)
def test_content_length_problems(length: str | None, status: int, code: str) -> None:
    body = encode(make_event())
    request = RequestFactory().generic(
        "POST",
        WEBHOOK_URL,
        body,
        content_type="application/json",
        HTTP_STRIPE_SIGNATURE=signed(body),
    )
    if length is None:
        del request.META["CONTENT_LENGTH"]
    else:
        request.META["CONTENT_LENGTH"] = length

    response = stripe_webhook(request)

    assert response.status_code == status
    assert json.loads(response.content)["code"] == code
    assert StripeEvent.objects.count() == 0


def test_an_empty_body_is_400() -> None:
    request = RequestFactory().generic(
        "POST", WEBHOOK_URL, b"", HTTP_STRIPE_SIGNATURE=signed(b""), CONTENT_LENGTH="0"
    )
    response = stripe_webhook(request)
    assert response.status_code == 400
    assert json.loads(response.content)["code"] == "malformed_json"


@pytest.mark.parametrize("method", ["get", "put", "delete", "patch"])
def test_only_post_is_allowed(client: Client, method: str) -> None:
    response = getattr(client, method)(WEBHOOK_URL)
    assert response.status_code == 405
    assert response["Allow"] == "POST"


def test_csrf_is_not_required(settings: Any) -> None:
    strict = Client(enforce_csrf_checks=True)
    event = make_event()
    assert deliver(strict, event).status_code == 200


def test_processing_errors_never_change_the_answer(
    client: Client, register_handler: Any, django_capture_on_commit_callbacks: Any
) -> None:
    # given: a handler that blows up, run eagerly by the view
    def explode(event: StripeEvent) -> None:
        raise RuntimeError("ledger is on fire")

    register_handler("charge.refunded", explode)
    event = make_event("charge.refunded", stripe_object("charge"))

    # when
    with django_capture_on_commit_callbacks(execute=True):
        response = deliver(client, event)

    # then
    assert response.status_code == 200
    row = StripeEvent.objects.get()
    assert row.status == StripeEvent.Status.FAILED
    assert row.last_error == "RuntimeError: ledger is on fire"
    assert row.attempts == 1


def _nested(depth: int) -> Any:
    """A value `depth` containers deep (1: an empty object)."""
    value: Any = {}
    for _ in range(depth - 1):
        value = {"a": value}
    return value


@pytest.mark.parametrize("brackets_in_strings", [0, 200])
def test_the_depth_limit_is_exact_whatever_the_brackets_in_strings(
    brackets_in_strings: int,
) -> None:
    # given: an event whose deepest value is at the limit (event > data > object > metadata >
    # the nested value), with or without many brackets inside its strings (the shallow bodies
    # are proved so by counting brackets; strings make the count larger than the depth)
    limit = services.MAX_JSON_DEPTH
    event = make_event("charge.succeeded", stripe_object("charge"))
    event["description"] = "{[" * brackets_in_strings
    event["data"]["object"]["metadata"] = _nested(limit - 3)
    at_limit = json.dumps(event).encode()
    event["data"]["object"]["metadata"] = _nested(limit - 2)
    over = json.dumps(event).encode()

    # then
    assert services.event_parse(at_limit)["id"] == event["id"]
    with pytest.raises(services.InvalidEvent) as refused:
        services.event_parse(over)
    assert refused.value.code == "malformed_json"


def test_a_shallow_event_is_accepted_without_the_walk(monkeypatch: pytest.MonkeyPatch) -> None:
    def walked(*args: Any) -> bool:
        raise AssertionError("a body with fewer brackets than the limit needs no walk")

    monkeypatch.setattr(services, "_depth_ok", walked)
    body = json.dumps(make_event("charge.succeeded", stripe_object("charge"))).encode()
    assert body.count(b"{") + body.count(b"[") <= services.MAX_JSON_DEPTH
    assert services.event_parse(body)["type"] == "charge.succeeded"
