import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _manage(*args: str, **env: str) -> subprocess.CompletedProcess:
    # DJANGO_ALLOW_ASYNC_UNSAFE: set by the browser tests in this process, never in a deployment.
    hidden = {
        "SECRET_KEY",
        "DEBUG",
        "STRIPE_API_KEY",
        "STRIPE_WEBHOOK_SECRET",
        "DJANGO_ALLOW_ASYNC_UNSAFE",
    }
    full_env = {k: v for k, v in os.environ.items() if k not in hidden}
    full_env.update(env)
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=120,
    )


PRODUCTION_SECRETS = {
    "SECRET_KEY": "x9!Qm2#vT7$kL4^pR8&wZ1*nB6(cY3)dF5-hJ0_gS9+aE2=uK7@iO4%rW8",
    "ALLOWED_HOSTS": "payments.example.com",
    "STRIPE_API_KEY": "sk_live_51NotARealKeyButNotTheDefaultEither",
    "STRIPE_WEBHOOK_SECRET": "whsec_9f2c1e4b7a0d3f6e8c5b2a1d4e7f0c3b",
}


def test_production_settings_pass_check_deploy_without_warnings():
    # given: production settings with a real secret
    result = _manage(
        "check",
        "--deploy",
        "--fail-level",
        "WARNING",
        DJANGO_ENV="production",
        **PRODUCTION_SECRETS,
    )

    # then
    assert result.returncode == 0, result.stdout + result.stderr
    assert "System check identified no issues" in result.stdout


def test_production_refuses_to_start_without_secret_key():
    result = _manage("check", DJANGO_ENV="production", ALLOWED_HOSTS="payments.example.com")
    assert result.returncode != 0
    assert "SECRET_KEY" in result.stderr


def test_atomic_requests_is_off(settings):
    assert settings.DATABASES["default"]["ATOMIC_REQUESTS"] is False


@pytest.mark.parametrize(
    "name,value",
    [
        ("STRIPE_WEBHOOK_SECRET", "whsec_emulator"),
        ("STRIPE_WEBHOOK_SECRET", "whsec_9f2c1e4b7a0d3f6e8c5b2a1d4e7f0c3b,whsec_emulator"),
        ("STRIPE_API_KEY", "sk_test_emulator"),
        ("SECRET_KEY", "dev-only-secret-key-change-me-0123456789-abcdefghijklmnop"),
        ("SECRET_KEY", "dev-insecure-key-do-not-use-in-production-0123456789"),
    ],
)
def test_production_refuses_to_start_with_a_development_secret(name, value):
    # given: production with one public development default among real secrets
    env = {**PRODUCTION_SECRETS, name: value}

    # when
    result = _manage("check", DJANGO_ENV="production", **env)

    # then: refused at start, naming the variable
    assert result.returncode != 0
    assert "refuses empty or development default secrets" in result.stderr
    assert name in result.stderr


@pytest.mark.parametrize("name", ["STRIPE_API_KEY", "STRIPE_WEBHOOK_SECRET"])
def test_production_refuses_to_start_without_stripe_secrets(name):
    env = {k: v for k, v in PRODUCTION_SECRETS.items() if k != name}
    result = _manage("check", DJANGO_ENV="production", **env)
    assert result.returncode != 0
    assert name in result.stderr


def test_deploy_check_names_a_development_secret(settings):
    # given: settings overridden after start (another settings module, a test)
    from ops.checks import development_secrets_check

    settings.SECRET_KEY = PRODUCTION_SECRETS["SECRET_KEY"]
    settings.STRIPE_API_KEY = PRODUCTION_SECRETS["STRIPE_API_KEY"]
    settings.STRIPE_WEBHOOK_SECRETS = ["whsec_live", "whsec_emulator"]

    # when
    errors = development_secrets_check()

    # then
    assert [e.id for e in errors] == ["ops.E001"]
    assert "STRIPE_WEBHOOK_SECRET" in errors[0].msg
