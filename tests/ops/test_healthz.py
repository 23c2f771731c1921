import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.core.management import call_command
from django.db import connection
from django.test import override_settings

from ops.views import migrations_check_reset

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def _fresh_migration_check():
    migrations_check_reset()
    yield
    migrations_check_reset()


def test_healthz_is_shallow_it_answers_without_database_or_broker(client):
    # given: a broker where nothing listens, and no database access allowed (no django_db)
    with override_settings(CELERY_TASK_ALWAYS_EAGER=False, REDIS_URL="redis://127.0.0.1:1/0"):
        # when
        response = client.get("/healthz")

    # then: liveness says only that the process serves HTTP
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


@pytest.mark.django_db
def test_readyz_reports_database_broker_and_migrations(client):
    # given: the real PostgreSQL and Redis of `make test`, every migration applied
    assert connection.vendor == "postgresql"

    # when
    with override_settings(CELERY_TASK_ALWAYS_EAGER=False):
        response = client.get("/readyz")

    # then
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["status"] == "ok"
    assert body["checks"]["database"]["ok"] is True
    assert body["checks"]["database"]["vendor"] == "postgresql"
    assert body["checks"]["broker"]["ok"] is True
    assert "skipped" not in body["checks"]["broker"]
    assert body["checks"]["migrations"] == {"ok": True}


@pytest.mark.django_db
def test_readyz_is_503_when_the_broker_is_unreachable(client):
    with override_settings(CELERY_TASK_ALWAYS_EAGER=False, REDIS_URL="redis://127.0.0.1:1/0"):
        response = client.get("/readyz")

    assert response.status_code == 503
    assert response.json()["checks"]["broker"]["ok"] is False
    assert response.json()["checks"]["database"]["ok"] is True


@pytest.mark.django_db
def test_readyz_is_503_while_a_migration_is_not_applied(client):
    # given: the database forgets one migration (rolled back with the test's transaction)
    with connection.cursor() as cursor:
        cursor.execute(
            "DELETE FROM django_migrations WHERE app = 'payouts' AND name = "
            "(SELECT max(name) FROM django_migrations WHERE app = 'payouts')"
        )
        assert cursor.rowcount == 1

    # when
    response = client.get("/readyz")

    # then
    assert response.status_code == 503
    migrations = response.json()["checks"]["migrations"]
    assert migrations["ok"] is False
    assert migrations["count"] == 1
    assert migrations["unapplied"][0].startswith("payouts.")


def test_readyz_is_503_when_the_database_is_down():
    # given: a process whose DATABASE_URL points where no PostgreSQL listens
    env = {k: v for k, v in os.environ.items() if k not in {"DATABASE_URL"}}
    env.update(DATABASE_URL="postgres://postgres@127.0.0.1:1/eats", DJANGO_ENV="test")
    code = (
        "import django, json; django.setup();"
        "from django.test import Client;"
        "r = Client().get('/readyz');"
        "print(json.dumps({'status': r.status_code, 'body': r.json()}))"
    )

    # when
    result = subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        env={**env, "DJANGO_SETTINGS_MODULE": "config.settings"},
        capture_output=True,
        text=True,
        timeout=120,
    )

    # then
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout.strip().splitlines()[-1])
    assert out["status"] == 503
    assert out["body"]["checks"]["database"] == {"ok": False, "error": "OperationalError"}
    assert out["body"]["checks"]["migrations"]["ok"] is False


def test_probes_refuse_post(client):
    assert client.post("/healthz").status_code == 405
    assert client.post("/readyz").status_code == 405


@pytest.mark.django_db
def test_bench_command_prints_one_json_line_per_benchmark(capsys):
    call_command("bench", "noop", "--quick")
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert len(lines) == 1
    assert lines[0]["bench"] == "noop"
    assert lines[0]["queries"] == 200
