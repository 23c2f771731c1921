import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _manage(*args: str, **env: str) -> subprocess.CompletedProcess:
    full_env = {k: v for k, v in os.environ.items() if k not in {"SECRET_KEY", "DEBUG"}}
    full_env.update(env)
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_production_settings_pass_check_deploy_without_warnings():
    # given: production settings with a real secret
    result = _manage(
        "check",
        "--deploy",
        "--fail-level",
        "WARNING",
        DJANGO_ENV="production",
        SECRET_KEY="x9!Qm2#vT7$kL4^pR8&wZ1*nB6(cY3)dF5-hJ0_gS9+aE2=uK7@iO4%rW8",
        ALLOWED_HOSTS="payments.example.com",
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
