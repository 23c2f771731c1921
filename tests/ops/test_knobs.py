"""Every tuning knob an app declares is listed in .env.example, everything .env.example lists
is read by the settings, and a knob is read from the environment of the same name."""

import re
from pathlib import Path
from typing import Any

import environ
import pytest
from django.conf import settings

from config.knobs import knobs_read
from invoicing import conf as invoicing_conf
from invoicing.conf import KNOBS as INVOICING_KNOBS
from ledger.conf import KNOBS as LEDGER_KNOBS
from marketplace.conf import KNOBS as MARKETPLACE_KNOBS
from payouts.conf import KNOBS as PAYOUTS_KNOBS
from reconciliation.conf import KNOBS as RECONCILIATION_KNOBS
from stripe_gateway.conf import KNOBS as STRIPE_KNOBS

ROOT = Path(__file__).resolve().parents[2]
DECLARED = {
    **STRIPE_KNOBS,
    **LEDGER_KNOBS,
    **MARKETPLACE_KNOBS,
    **PAYOUTS_KNOBS,
    **RECONCILIATION_KNOBS,
    **INVOICING_KNOBS,
}
# Read directly by config/settings.py (keys, URLs, environment), not tuning knobs.
BASE = {
    "DJANGO_ENV",
    "SECRET_KEY",
    "DEBUG",
    "ALLOWED_HOSTS",
    "CSRF_TRUSTED_ORIGINS",
    "DATABASE_URL",
    "REDIS_URL",
    "CELERY_EAGER",
    "STRIPE_API_KEY",
    "STRIPE_WEBHOOK_SECRET",
    "LOG_LEVEL",
    "DB_CONN_MAX_AGE",
    "STRIPE_FORBID_IN_ATOMIC",
    "API_TOKEN_TTL_DAYS",
    "EMAIL_URL",
    "STAFF_SESSION_SECONDS",
    "SECURE_SSL_REDIRECT",
    "SECURE_HSTS_SECONDS",
    # operations (README "Operations")
    "METRICS_TOKEN",
    "METRICS_RISK_ASSETS",
    "LOG_FORMAT",
    "DATABASE_OWNER_URL",
    "DB_ROLE",
    "DB_PGBOUNCER",
    "DB_PREPARED",
    "WEB_WORKERS",
    "WEB_THREADS",
    "BEAT_LOCK_KEY",
    "BEAT_LOCK_TTL",
    "PROMETHEUS_MULTIPROC_DIR",
    "WORKER_METRICS_BIND",
}


def listed() -> set[str]:
    text = (ROOT / ".env.example").read_text()
    return set(re.findall(r"^(?:# )?([A-Z][A-Z0-9_]+)=", text, flags=re.MULTILINE))


def test_env_example_lists_exactly_the_declared_knobs_and_the_base_variables() -> None:
    assert sorted(set(DECLARED) - listed()) == []
    assert sorted(listed() - set(DECLARED) - BASE) == []


def test_env_example_lists_every_variable_the_settings_read() -> None:
    text = (ROOT / "config" / "settings.py").read_text()
    read = set(re.findall(r'env\.[a-z_]+\(\s*"([A-Z][A-Z0-9_]+)"', text))

    assert len(read) >= 20
    assert sorted(read - listed()) == []


def test_settings_read_every_declared_knob() -> None:
    assert sorted(name for name in DECLARED if not hasattr(settings, name)) == []


def test_a_knob_is_read_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    # given
    monkeypatch.setenv("RECONCILIATION_GRACE_SECONDS", "90")
    monkeypatch.setenv("PAYOUTS_MIN_AMOUNT", '{"USD/2": 2500, "*": 1}')
    monkeypatch.setenv("RECONCILIATION_BOOK_FEES", "false")
    monkeypatch.setenv("INVOICING_MERCHANT_MODE_TRUST", "3")
    monkeypatch.setenv("INVOICING_SERVICES_TAX_BPS", "null")
    monkeypatch.setenv("INVOICING_PLATFORM_ADDRESS", "2 Quay Road, 69001 Lyon")

    # when
    values = knobs_read(environ.Env(), DECLARED)

    # then
    assert values["RECONCILIATION_GRACE_SECONDS"] == 90
    assert values["PAYOUTS_MIN_AMOUNT"] == {"USD/2": 2500, "*": 1}
    assert values["RECONCILIATION_BOOK_FEES"] is False
    assert values["INVOICING_MERCHANT_MODE_TRUST"] == 3
    assert values["INVOICING_SERVICES_TAX_BPS"] is None  # "not configured"
    assert values["INVOICING_PLATFORM_ADDRESS"] == "2 Quay Road, 69001 Lyon"
    assert values["LEDGER_BALANCE_SHARDS"] == 8  # unset: the declared default
    assert values["INVOICING_PLATFORM_TAX_ID"] == "FR00123456789"


def test_the_platform_details_are_read_together_from_their_knobs(settings: Any) -> None:
    # given
    settings.INVOICING_PLATFORM_NAME = "Eats Europe SA"

    # when
    platform = invoicing_conf.get("INVOICING_PLATFORM")

    # then
    assert platform == {
        "name": "Eats Europe SA",
        "address": settings.INVOICING_PLATFORM_ADDRESS,
        "tax_id": settings.INVOICING_PLATFORM_TAX_ID,
    }
