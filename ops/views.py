"""`GET /healthz`: is the database reachable, is Redis reachable. JSON, 200 or 503."""

import time

import redis
from django.conf import settings
from django.db import connection
from django.http import HttpRequest, JsonResponse
from django.views.decorators.http import require_GET


def _check_database() -> dict:
    started = time.perf_counter()
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
            cursor.fetchone()
    except Exception as exc:  # any driver error means "not reachable"
        return {"ok": False, "error": exc.__class__.__name__}
    return {"ok": True, "vendor": connection.vendor, "ms": _ms(started)}


def _check_redis() -> dict:
    if settings.CELERY_TASK_ALWAYS_EAGER and not getattr(settings, "HEALTHZ_REQUIRE_REDIS", False):
        return {"ok": True, "skipped": "celery runs eagerly; no broker in use"}
    started = time.perf_counter()
    try:
        client = redis.Redis.from_url(
            settings.REDIS_URL, socket_timeout=1, socket_connect_timeout=1
        )
        client.ping()
    except Exception as exc:  # connection refused, timeout, auth...
        return {"ok": False, "error": exc.__class__.__name__}
    return {"ok": True, "ms": _ms(started)}


def _ms(started: float) -> float:
    return round((time.perf_counter() - started) * 1000, 2)


@require_GET
def healthz(request: HttpRequest) -> JsonResponse:
    checks = {"database": _check_database(), "redis": _check_redis()}
    healthy = all(check["ok"] for check in checks.values())
    return JsonResponse(
        {"status": "ok" if healthy else "unavailable", "checks": checks},
        status=200 if healthy else 503,
    )
