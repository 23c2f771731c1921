"""Puts each request's id and client address where `audit_record` finds them."""

from __future__ import annotations

import ipaddress
import re
import uuid
from collections.abc import Callable

from django.http import HttpRequest, HttpResponse

from audit.context import audit_context

_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,64}$")
# Where ops.middleware.RequestContextMiddleware (first in the stack) leaves the id it chose
# (a WSGI environ key; audit, at the bottom of the apps, imports none above it).
REQUEST_ID_META = "eats.request_id"


def _client_ip(request: HttpRequest) -> str | None:
    # REMOTE_ADDR is the peer (the proxy in front of us in production sets it through
    # gunicorn's forwarded-allow-ips); X-Forwarded-For is client-controlled, so not trusted.
    raw = request.META.get("REMOTE_ADDR", "")
    try:
        return str(ipaddress.ip_address(raw))
    except ValueError:
        return None


class AuditContextMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        # The id the request context (ops.middleware, first in the stack) chose and echoes in
        # X-Request-ID and in every log line; this middleware's own choice only without it.
        request_id = request.META.get(REQUEST_ID_META, "")
        if not request_id:
            given = request.headers.get("X-Request-ID", "")
            request_id = given if _REQUEST_ID.match(given) else uuid.uuid4().hex
        via = "staff" if request.path.startswith("/staff/") else "api"
        if request.path.startswith("/admin/"):
            via = "admin"
        with audit_context(request_id=request_id, ip=_client_ip(request), via=via):
            response = self.get_response(request)
        response["X-Request-ID"] = request_id
        return response
