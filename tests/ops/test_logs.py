"""Structured logs: JSON lines carrying the ids in context, never a secret or a card number."""

import io
import json
import logging
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from celery import shared_task
from django.http import HttpResponse
from django.test import RequestFactory

from ops.logs import ContextFilter, JsonFormatter, RedactingFilter, log_context
from ops.middleware import RequestContextMiddleware

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def json_lines() -> Iterator[io.StringIO]:
    """The production handler (formatter and filters as settings.LOGGING builds them)."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(
        JsonFormatter(
            "%(asctime)s %(levelname)s %(name)s %(message)s",
            rename_fields={"asctime": "time", "levelname": "level", "name": "logger"},
        )
    )
    handler.addFilter(ContextFilter())
    handler.addFilter(RedactingFilter())
    logger = logging.getLogger("eats.test")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    yield stream
    logger.removeHandler(handler)


def lines(stream: io.StringIO) -> list[dict]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_a_line_is_json_with_the_ids_in_context(json_lines):
    with log_context(stripe_event_id="evt_1", order_id=42), log_context(payout_id="po_7"):
        logging.getLogger("eats.test").info("booked %s", "payment")
    logging.getLogger("eats.test").info("outside")

    first, second = lines(json_lines)
    assert first["message"] == "booked payment"
    assert first["level"] == "INFO"
    assert first["logger"] == "eats.test"
    assert (first["stripe_event_id"], first["order_id"], first["payout_id"]) == (
        "evt_1",
        42,
        "po_7",
    )
    assert "time" in first
    assert "order_id" not in second


def test_the_middleware_binds_a_request_id_to_every_line_of_the_request(json_lines):
    def view(request):
        logging.getLogger("eats.test").warning("in the view")
        return HttpResponse("ok")

    response = RequestContextMiddleware(view)(
        RequestFactory().get("/x", HTTP_X_REQUEST_ID="req-abc.123")
    )
    forged = RequestContextMiddleware(view)(RequestFactory().get("/x", HTTP_X_REQUEST_ID="a b\n"))

    assert response["X-Request-ID"] == "req-abc.123"
    assert forged["X-Request-ID"] != "a b\n" and len(forged["X-Request-ID"]) == 32
    first, second = lines(json_lines)
    assert first["request_id"] == "req-abc.123"
    assert second["request_id"] == forged["X-Request-ID"]


@shared_task(name="tests.ops.log_in_task")
def log_in_task(payout_ids: list[str], run_id: int | None = None) -> str:
    logging.getLogger("eats.test").info("driving")
    return "ok"


def test_a_celery_task_line_carries_the_task_id_and_the_ids_in_its_arguments(
    json_lines, celery_eager
):
    with log_context(request_id="r1"):
        result = log_in_task.apply(args=[["p1", "p2"]], kwargs={"run_id": 9}, task_id="t-123")
        logging.getLogger("eats.test").info("after the task")

    assert result.result == "ok"
    in_task, after = lines(json_lines)
    assert in_task["task_id"] == "t-123"
    assert in_task["task"] == "tests.ops.log_in_task"
    assert in_task["payout_id"] == "p1,p2"
    assert in_task["run_id"] == 9
    assert in_task["request_id"] == "r1"
    # the request's context survives an eager task, without the task's ids
    assert after["request_id"] == "r1" and "task_id" not in after


@pytest.mark.parametrize(
    "secret",
    [
        "sk_live_51HxAbCdEfGhIjKlMn",
        "sk_test_emulator",
        "rk_live_abcdef123456",
        "whsec_0123456789abcdef",
        "4242424242424242",
        "4242 4242 4242 4242",
        "4000-0566-5566-5556",
        "378282246310005",
    ],
)
def test_no_secret_or_card_number_reaches_a_line(json_lines, secret):
    logger = logging.getLogger("eats.test")
    logger.info("calling stripe with %s", secret)
    logger.info(f"card={secret}")
    try:
        raise ValueError(f"bad key {secret}")
    except ValueError:
        logger.exception("failed")

    text = json_lines.getvalue()
    assert secret not in text
    assert len(lines(json_lines)) == 3
    assert "REDACTED" in text


def test_passwords_in_urls_and_assignments_are_redacted(json_lines):
    logging.getLogger("eats.test").info(
        "db postgres://eats_app:s3cr3t-pw@db:5432/eats password=hunter2 Authorization: Bearer abcdefghijkl"
    )
    text = json_lines.getvalue()
    assert "s3cr3t-pw" not in text and "hunter2" not in text and "abcdefghijkl" not in text
    assert "postgres://eats_app:[REDACTED]@db:5432/eats" in lines(json_lines)[0]["message"]


@pytest.mark.parametrize(
    "text",
    [
        "order 1042 payout 0192f3a4 amount 5900 evt_1PgafTB7WZ01zgkW",
        # Celery's task timing (a float with 16 digits after the point)
        "Task ledger.seal[1d48] succeeded in 0.0123456789012345s: 1",
        # 16 digits failing the Luhn check: an id, not a card
        "reference 1234567812345678",
    ],
)
def test_ids_and_timings_are_not_mistaken_for_card_numbers(json_lines, text):
    logging.getLogger("eats.test").info(text)
    assert lines(json_lines)[0]["message"] == text


def test_production_logs_one_json_object_per_line():
    # given: a production process (secrets that are not development defaults)
    env = {k: v for k, v in os.environ.items() if k not in {"DEBUG", "LOG_FORMAT"}}
    env.update(
        DJANGO_ENV="production",
        DJANGO_SETTINGS_MODULE="config.settings",
        SECRET_KEY="x9!Qm2#vT7$kL4^pR8&wZ1*nB6(cY3)dF5-hJ0_gS9+aE2=uK7@iO4%rW8",
        ALLOWED_HOSTS="payments.example.com",
        STRIPE_API_KEY="sk_live_productionkey123",
        STRIPE_WEBHOOK_SECRET="whsec_productionsecret123",
    )
    code = (
        "import django, logging; django.setup();"
        "from ops.logs import log_context\n"
        "with log_context(order_id=7): logging.getLogger('eats').warning('key sk_live_abc123')"
    )

    # when
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
    )

    # then
    assert result.returncode == 0, result.stderr
    line = json.loads(result.stderr.strip().splitlines()[-1])
    assert line["message"] == "key sk_live_[REDACTED]"
    assert line["order_id"] == 7
    assert line["level"] == "WARNING"
