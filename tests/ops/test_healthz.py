import json

import pytest
from django.core.management import call_command
from django.db import connection
from django.test import override_settings


@pytest.mark.django_db
def test_healthz_reports_database_and_redis_reachable(client):
    # given: the real PostgreSQL and Redis of `make test`
    assert connection.vendor == "postgresql"

    # when
    with override_settings(CELERY_TASK_ALWAYS_EAGER=False):
        response = client.get("/healthz")

    # then
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "ok"
    assert body["checks"]["database"]["ok"] is True
    assert body["checks"]["database"]["vendor"] == "postgresql"
    assert body["checks"]["redis"]["ok"] is True
    assert "skipped" not in body["checks"]["redis"]


@pytest.mark.django_db
def test_healthz_is_503_when_redis_is_unreachable(client):
    # given: a Redis URL where nothing listens
    with override_settings(CELERY_TASK_ALWAYS_EAGER=False, REDIS_URL="redis://127.0.0.1:1/0"):
        # when
        response = client.get("/healthz")

    # then
    assert response.status_code == 503
    assert response.json()["checks"]["redis"]["ok"] is False


def test_healthz_refuses_post(client):
    assert client.post("/healthz").status_code == 405


@pytest.mark.django_db
def test_bench_command_prints_one_json_line_per_benchmark(capsys):
    call_command("bench", "noop", "--quick")
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert len(lines) == 1
    assert lines[0]["bench"] == "noop"
    assert lines[0]["queries"] == 200
