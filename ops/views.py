"""Probes and metrics.

- `GET /healthz` (liveness): the process answers HTTP. It touches nothing else on purpose: a
  database or Redis outage must not make Kubernetes restart every web pod (a restart cures
  neither, and a thundering herd of restarts makes the recovery slower).
- `GET /readyz` (readiness): the database answers, the broker answers, and every migration
  in the code is applied. 503 takes the pod out of the Service until it is true again.
- `GET /metrics`: Prometheus text format (see `ops.metrics`), behind `METRICS_TOKEN`.
"""

import hmac
import time

import redis
from django.conf import settings
from django.db import DEFAULT_DB_ALIAS, connections
from django.db.migrations.executor import MigrationExecutor
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.http import require_GET

# Once every migration is applied it stays so for the life of this process (the code cannot
# gain migrations without a restart), so the check is done until it first passes, not on
# every probe: loading the migration graph costs ~100 ms.
_migrations_ok = False


def migrations_check_reset() -> None:
    """Forget a passed migration check (tests)."""
    global _migrations_ok
    _migrations_ok = False


def _check_database() -> dict:
    started = time.perf_counter()
    try:
        with connections[DEFAULT_DB_ALIAS].cursor() as cursor:
            cursor.execute("SELECT 1")
            cursor.fetchone()
    except Exception as exc:  # any driver error means "not reachable"
        return {"ok": False, "error": exc.__class__.__name__}
    return {"ok": True, "vendor": connections[DEFAULT_DB_ALIAS].vendor, "ms": _ms(started)}


def _check_broker() -> dict:
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


def _check_migrations() -> dict:
    global _migrations_ok
    if _migrations_ok:
        return {"ok": True}
    try:
        executor = MigrationExecutor(connections[DEFAULT_DB_ALIAS])
        plan = executor.migration_plan(executor.loader.graph.leaf_nodes())
    except Exception as exc:
        return {"ok": False, "error": exc.__class__.__name__}
    if plan:
        missing = [f"{m.app_label}.{m.name}" for m, _backwards in plan]
        return {"ok": False, "unapplied": missing[:20], "count": len(missing)}
    _migrations_ok = True
    return {"ok": True}


def _ms(started: float) -> float:
    return round((time.perf_counter() - started) * 1000, 2)


@require_GET
def healthz(request: HttpRequest) -> JsonResponse:
    """Liveness: shallow on purpose (see the module docstring)."""
    return JsonResponse({"status": "ok"})


@require_GET
def readyz(request: HttpRequest) -> JsonResponse:
    checks = {"database": _check_database(), "broker": _check_broker()}
    # Without a database the migration check can only fail the same way; skip its cost.
    checks["migrations"] = (
        _check_migrations()
        if checks["database"]["ok"]
        else {"ok": False, "error": "database unavailable"}
    )
    ready = all(check["ok"] for check in checks.values())
    return JsonResponse(
        {"status": "ok" if ready else "unavailable", "checks": checks},
        status=200 if ready else 503,
    )


@require_GET
def metrics(request: HttpRequest) -> HttpResponse:
    """Prometheus exposition. With METRICS_TOKEN set, `Authorization: Bearer <token>` is
    required; without one it is served only outside production (the chart always sets one,
    and a NetworkPolicy admits only the monitoring namespace)."""
    token = settings.METRICS_TOKEN
    if token:
        supplied = request.headers.get("Authorization", "").removeprefix("Bearer ").strip()
        if not hmac.compare_digest(supplied.encode(), token.encode()):
            return HttpResponse("unauthorized\n", status=401, content_type="text/plain")
    elif settings.DJANGO_ENV == "production":
        return HttpResponse("METRICS_TOKEN is not set\n", status=403, content_type="text/plain")

    from ops.metrics import render

    body, content_type = render()
    return HttpResponse(body, content_type=content_type)
