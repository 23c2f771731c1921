"""Verification of the `Stripe-Signature` header, as stripe-python 16.1 does it, plus more.

Same parsing and HMAC as `stripe.WebhookSignature.verify_header` (header split on ",", items
on "=", `t` parsed with `int()`, HMAC-SHA256 of `"%d." % t + raw body` with the secret's UTF-8
bytes, accepted if any `v1` matches), with three differences: the tolerance is checked in
both directions (a timestamp more than `tolerance` seconds in the future is refused too),
several secrets are tried (rotation, Connect endpoint), and bad input never raises anything
but `SignatureError`. Pure Python; no Django, no `stripe` import.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Sequence

MAX_HEADER_LENGTH = 8192
SCHEME = "v1"


class SignatureError(Exception):
    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code
        self.message = message


def sign(payload: bytes, secret: str, timestamp: int) -> str:
    """The hex `v1` signature of `payload` at `timestamp` (for senders and tests)."""
    return hmac.new(
        secret.encode("utf-8"), b"%d." % timestamp + payload, hashlib.sha256
    ).hexdigest()


def signature_header(payload: bytes, secrets: Sequence[str], timestamp: int) -> str:
    """`t=...,v1=...[,v1=...]`: one `v1` per secret, as Stripe sends during a roll."""
    parts = [f"t={timestamp}"] + [f"{SCHEME}={sign(payload, s, timestamp)}" for s in secrets]
    return ",".join(parts)


def _parse(header: str) -> tuple[int, list[str]]:
    items = [item.split("=", 2) for item in header.split(",")]
    timestamp = int(next(item[1] for item in items if item[0] == "t"))
    signatures = [item[1] for item in items if item[0] == SCHEME]
    return timestamp, signatures


def verify_signature(
    payload: bytes,
    header: str | None,
    secrets: Sequence[str],
    *,
    tolerance: int,
    now: float | None = None,
) -> int:
    """Return the signed timestamp if `header` signs `payload` with one of `secrets`.

    `tolerance` in seconds, both ways; 0 disables the check (as in stripe-python).

    Raises SignatureError with a code: `signature_missing`, `webhook_not_configured`,
    `signature_malformed`, `signature_mismatch`, `timestamp_outside_tolerance`.
    """
    if not header:
        raise SignatureError("signature_missing", "No Stripe-Signature header.")
    usable = [s for s in secrets if isinstance(s, str) and s.strip()]
    if not usable:
        raise SignatureError("webhook_not_configured", "No webhook secret is configured.")
    if len(header) > MAX_HEADER_LENGTH:
        raise SignatureError("signature_malformed", "The Stripe-Signature header is too long.")
    try:
        timestamp, signatures = _parse(header)
    except (ValueError, IndexError, StopIteration):
        raise SignatureError(
            "signature_malformed", "Unable to extract timestamp and signatures from header."
        ) from None
    if not signatures:
        raise SignatureError(
            "signature_malformed", f"No signatures found with expected scheme {SCHEME}."
        )
    candidates = [s.encode("utf-8", "replace") for s in signatures]
    matched = False
    for secret in usable:
        expected = sign(payload, secret, timestamp).encode("ascii")
        # Compare against every candidate (no early exit) in constant time per comparison.
        for candidate in candidates:
            matched |= hmac.compare_digest(expected, candidate)
    if not matched:
        raise SignatureError(
            "signature_mismatch", "No signatures found matching the expected signature."
        )
    # Comparisons only (int vs float compare exactly): `t` can be any int() the header
    # spells, far beyond a float's range, so no arithmetic on it. Same bound as stripe-python
    # in the past (`t < now - tolerance`), mirrored into the future.
    current = time.time() if now is None else now
    if tolerance and (timestamp < current - tolerance or timestamp > current + tolerance):
        raise SignatureError(
            "timestamp_outside_tolerance",
            f"Timestamp outside the tolerance zone ({timestamp}).",
        )
    return timestamp
