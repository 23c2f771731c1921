"""Request context for logs, and the webhook endpoint's metrics."""

import re
import time
import uuid
from collections.abc import Callable

from django.http import HttpRequest, HttpResponse

from audit.middleware import REQUEST_ID_META
from ops.logs import context_bind, context_reset

_VALID_ID = re.compile(r"^[A-Za-z0-9._-]{1,128}$")


class RequestContextMiddleware:
    """Binds a request id (the proxy's `X-Request-ID` when it is sane, else a new one) for
    every log line of the request, echoes it in the response, and times Stripe webhooks."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        supplied = request.headers.get("X-Request-ID", "")
        request_id = supplied if _VALID_ID.match(supplied) else uuid.uuid4().hex
        # The one id of this request: the audit context (audit.middleware) records this one.
        request.META[REQUEST_ID_META] = request_id
        token = context_bind(request_id=request_id)
        started = time.perf_counter()
        try:
            response = self.get_response(request)
        finally:
            context_reset(token)
        if request.path.startswith("/webhooks/stripe"):
            from ops.metrics import WEBHOOK_REQUESTS, WEBHOOK_SECONDS

            WEBHOOK_SECONDS.observe(time.perf_counter() - started)
            WEBHOOK_REQUESTS.labels(outcome=str(response.status_code)).inc()
        response["X-Request-ID"] = request_id
        return response
