"""`POST /webhooks/stripe/`: verify, store once, answer 200, schedule processing.

Answers (JSON `{"code", "message"}` on errors; nothing is written unless 200):
- 200 `{"received": true, "duplicate": bool}`: stored now, or already stored (a redelivery);
- 400: bad/missing signature, timestamp outside the tolerance (past OR future), malformed
  JSON, not an event; 405: not POST; 411: no Content-Length; 413: body over
  STRIPE_WEBHOOK_MAX_BODY.
Processing errors are recorded on the inbox row and never change the answer. A 5xx only
happens when our database is down, which is right: Stripe then retries the delivery.
"""

from __future__ import annotations

import json
import logging

from django.conf import settings
from django.core.exceptions import RequestDataTooBig
from django.http import HttpRequest, HttpResponse, JsonResponse, UnreadablePostError
from django.views.decorators.csrf import csrf_exempt

from stripe_gateway import conf as gateway_conf
from stripe_gateway.services import InvalidEvent, event_ingest, event_parse
from stripe_gateway.signature import SignatureError, verify_signature

logger = logging.getLogger(__name__)


# The two 200 answers, serialized once (as JsonResponse would: the same bytes and type).
_ANSWERS = {
    duplicate: json.dumps({"received": True, "duplicate": duplicate}).encode()
    for duplicate in (False, True)
}


def _error(status: int, code: str, message: str) -> JsonResponse:
    return JsonResponse({"code": code, "message": message}, status=status)


@csrf_exempt
def stripe_webhook(request: HttpRequest) -> HttpResponse:
    if request.method != "POST":
        response = _error(405, "method_not_allowed", "Only POST is accepted.")
        response["Allow"] = "POST"
        return response

    limit = gateway_conf.get("STRIPE_WEBHOOK_MAX_BODY")
    declared = request.META.get("CONTENT_LENGTH")
    if not declared:
        return _error(411, "length_required", "A Content-Length header is required.")
    try:
        length = int(declared)
    except ValueError:
        return _error(400, "invalid_content_length", "Content-Length is not a number.")
    if length < 0:
        return _error(400, "invalid_content_length", "Content-Length is negative.")
    if length > limit:
        return _error(413, "payload_too_large", f"The body is over {limit} bytes.")
    try:
        body = request.body  # read only now that the declared length is known to be small
    except RequestDataTooBig:
        return _error(413, "payload_too_large", f"The body is over {limit} bytes.")
    except (UnreadablePostError, OSError):
        return _error(400, "unreadable_body", "The body could not be read.")
    if len(body) > limit:
        return _error(413, "payload_too_large", f"The body is over {limit} bytes.")

    try:
        verify_signature(
            body,
            request.META.get("HTTP_STRIPE_SIGNATURE"),
            settings.STRIPE_WEBHOOK_SECRETS,
            tolerance=gateway_conf.get("STRIPE_WEBHOOK_TOLERANCE"),
        )
    except SignatureError as exc:
        log = logger.error if exc.code == "webhook_not_configured" else logger.warning
        log("Stripe webhook refused: %s (%s)", exc.code, exc.message)
        return _error(400, exc.code, exc.message)

    try:
        payload = event_parse(body)
        result = event_ingest(payload=payload, raw=body.decode("utf-8"))
    except InvalidEvent as exc:
        logger.warning("signed Stripe webhook with a bad body: %s", exc.message)
        return _error(400, exc.code, exc.message)
    return HttpResponse(_ANSWERS[not result.created], content_type="application/json")
