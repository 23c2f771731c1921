"""Fuzzing the webhook endpoint (Hypothesis): whatever the body and headers, never a 5xx,
and nothing is written unless the request is a validly signed event."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest
import stripe
from django.test import Client
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from stripe_gateway.models import StripeEvent
from stripe_gateway.signature import SignatureError, sign, verify_signature
from tests.marketplace.helpers import SECRET, post, signed

pytestmark = pytest.mark.django_db
FUZZ = settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow])

any_text = st.text(alphabet=st.characters(exclude_categories=()), max_size=40)
json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=True, allow_infinity=True)
    | any_text
)
json_values = st.recursive(
    json_scalars,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(any_text, children, max_size=4)
    ),
    max_leaves=25,
)
now = int(time.time())
timestamps = st.one_of(
    st.integers(min_value=now - 600, max_value=now + 600),
    st.integers(min_value=-(2**64), max_value=2**64),
)
valid_ids = st.text("abcdefghijklmnopqrstuvwxyz0123456789", min_size=1, max_size=24).map(
    lambda s: "evt_" + s
)
events = st.fixed_dictionaries(
    {
        "id": st.one_of(valid_ids, valid_ids, valid_ids, any_text, st.integers()),
        "type": st.one_of(
            st.sampled_from(["charge.succeeded", "plan.created"]), any_text, st.none()
        ),
        "created": st.one_of(
            st.integers(now - 10**6, now), st.integers(now - 10**6, now), json_scalars
        ),
        "data": st.one_of(
            st.fixed_dictionaries({"object": st.dictionaries(any_text, json_values, max_size=5)}),
            st.fixed_dictionaries({"object": st.dictionaries(any_text, json_values, max_size=5)}),
            json_values,
        ),
    },
    optional={
        "object": st.sampled_from(["event", "event", "charge", None]),
        "livemode": st.one_of(st.booleans(), st.booleans(), json_scalars),
        "api_version": st.one_of(st.none(), any_text),
        "account": st.one_of(any_text, st.none(), st.integers()),
        "extra": json_values,
    },
)


def header_values() -> st.SearchStrategy[str]:
    items = st.one_of(
        st.builds(lambda t: f"t={t}", timestamps),
        st.builds(lambda s: f"v1={s}", st.text("0123456789abcdef", max_size=64)),
        st.builds(lambda k, v: f"{k}={v}", any_text, any_text),
        any_text,
    )
    return st.lists(items, max_size=6).map(",".join)


def ascii_header(value: str) -> str:
    # WSGI headers are latin-1: what a real server would hand to Django
    return value.encode("utf-8", "surrogatepass").decode("latin-1")


@FUZZ
@given(body=st.binary(max_size=2048), header=st.one_of(st.none(), header_values()))
def test_random_bytes_and_headers_never_5xx_and_never_write(
    body: bytes, header: str | None
) -> None:
    before = StripeEvent.objects.count()
    response = post(Client(), body, None if header is None else ascii_header(header))
    assert response.status_code < 500
    assert response.status_code == 400 or response.status_code == 411  # 411: empty body
    assert StripeEvent.objects.count() == before


STATUSES: list[int] = []


def numbers_as_floats(value: Any) -> Any:
    """jsonb keeps a number's value, not its spelling: 1.5e+22 comes back as an int."""
    if isinstance(value, dict):
        return {k: numbers_as_floats(v) for k, v in value.items()}
    if isinstance(value, list):
        return [numbers_as_floats(v) for v in value]
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    return value


@FUZZ
@given(event=events, dumps_kwargs=st.sampled_from([{}, {"ensure_ascii": False}, {"indent": 1}]))
def _fuzz_signed_events(event: dict[str, Any], dumps_kwargs: dict) -> None:
    # given: a body signed with the right secret, so it reaches parsing and the database
    body = json.dumps(event, **dumps_kwargs).encode("utf-8", "surrogatepass")
    before = StripeEvent.objects.count()

    # when
    response = post(Client(), body, signed(body))

    # then
    STATUSES.append(response.status_code)
    assert response.status_code in (200, 400), response.content
    if response.status_code == 200 and not response.json()["duplicate"]:
        row = StripeEvent.objects.get(stripe_id=event["id"])
        assert numbers_as_floats(row.payload) == numbers_as_floats(json.loads(body))
        assert StripeEvent.objects.count() == before + 1
    else:  # refused, or an id seen in an earlier example (the first content wins)
        assert StripeEvent.objects.count() == before


def test_signed_random_events_never_5xx() -> None:
    STATUSES.clear()
    _fuzz_signed_events()
    # not vacuous: both stored events and refused ones were generated
    assert STATUSES.count(200) >= 5
    assert STATUSES.count(400) >= 5


ACCEPTED: list[int] = []


@FUZZ
@given(
    body=st.text(max_size=200).map(lambda s: s.encode()),
    noise=st.lists(header_values(), max_size=2),
    timestamp=st.one_of(st.integers(now - 250, now + 250), timestamps),
    position=st.integers(0, 2),
    include_valid=st.sampled_from([True, True, True, False]),
    secret=st.sampled_from([SECRET, SECRET, "whsec_other"]),
)
def _fuzz_verifier_against_stripe_python(
    body: bytes,
    noise: list[str],
    timestamp: int,
    position: int,
    include_valid: bool,
    secret: str,
) -> None:
    # given: random header items, with (sometimes) a valid t/v1 pair for SECRET among them
    items = list(noise)
    if include_valid:
        items.insert(min(position, len(items)), f"t={timestamp},v1={sign(body, SECRET, timestamp)}")
    header = ",".join(items)
    try:
        accepted = verify_signature(body, header, [secret], tolerance=300)
    except SignatureError:
        return
    ACCEPTED.append(accepted)
    # we accepted: stripe-python (one-sided tolerance) must accept too
    assert stripe.WebhookSignature.verify_header(body, header, secret, tolerance=300)


def test_our_verifier_never_accepts_what_stripe_python_refuses() -> None:
    ACCEPTED.clear()
    _fuzz_verifier_against_stripe_python()
    assert len(ACCEPTED) >= 5  # not vacuous


@FUZZ
@given(body=st.text(max_size=200).map(lambda s: s.encode()), skew=st.integers(-299, 299))
def test_stripe_python_signatures_verify_with_ours(body: bytes, skew: int) -> None:
    timestamp = int(time.time()) + skew
    header = stripe.WebhookSignature.generate_signature_header(body.decode(), SECRET, timestamp)
    assert verify_signature(body, header, ["whsec_other", SECRET], tolerance=300) == timestamp


@pytest.mark.parametrize("age", [300, 300.5, 301])
def test_the_tolerance_edge_matches_stripe_python(age: float) -> None:
    # given: a timestamp `age` seconds before `now` (a fractional now, as time.time() is)
    now = 1_800_000_000.25
    timestamp = int(now - age)
    body = b"{}"
    header = f"t={timestamp},v1={sign(body, SECRET, timestamp)}"

    # when
    try:
        verify_signature(body, header, [SECRET], tolerance=300, now=now)
        ours = True
    except SignatureError:
        ours = False

    # then: the same verdict as stripe-python's `timestamp < time.time() - tolerance`
    assert ours is (not timestamp < now - 300)
