"""PgBouncer transaction pooling: nothing session-level may outlive a transaction.

Run by `make test` directly and by .ci/run again through a PgBouncer in transaction mode
(with the ledger, webhook and payouts concurrency tests)."""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from django.db import connection

from ledger.services import PostingInput, transaction_post, transactions_seal

ROOT = Path(__file__).resolve().parents[2]
APP_PACKAGES = ["config", "ledger", "marketplace", "payouts", "reconciliation", "ops"]
# Known and accepted: the reconciliation benchmark points search_path at its own schema for
# the session; it runs directly against PostgreSQL (`make bench PGBOUNCER=1` is for the
# ledger and orders benchmarks), never in the product.
ACCEPTED = {"reconciliation/benchmarks.py"}

# Session-scoped features that break (or leak to another client) behind a transaction pooler.
FORBIDDEN = [
    (re.compile(r"pg_(try_)?advisory_lock(_shared)?\s*\("), "session advisory lock"),
    (re.compile(r"pg_advisory_unlock"), "session advisory unlock"),
    (re.compile(r"""execute\(\s*f?["'](SET|RESET)\s+(?!LOCAL\b)""", re.I), "session SET"),
    (re.compile(r"""set_config\([^)]*,\s*false\s*\)""", re.I), "session set_config"),
    (re.compile(r"""["']\s*(LISTEN|UNLISTEN)\s""", re.I), "LISTEN"),
    (re.compile(r"""\bprepare_threshold\s*=\s*\d"""), "server-side prepared statements"),
    (re.compile(r"""server_side_binding["']?\s*[:=]\s*True"""), "server-side binding"),
]


def test_no_session_level_feature_in_the_application_code():
    findings = []
    for package in APP_PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            if "migrations" in path.parts or str(path.relative_to(ROOT)) in ACCEPTED:
                continue
            text = path.read_text()
            for pattern, what in FORBIDDEN:
                for match in pattern.finditer(text):
                    line = text.count("\n", 0, match.start()) + 1
                    findings.append(f"{path.relative_to(ROOT)}:{line}: {what}")
    assert findings == []


def test_the_scanner_finds_what_it_looks_for():
    sample = 'cursor.execute("SET lock_timeout = 0")\nSELECT pg_advisory_lock(1)\n"LISTEN x"'
    found = {what for pattern, what in FORBIDDEN if pattern.search(sample)}
    assert found == {"session SET", "session advisory lock", "LISTEN"}


@pytest.mark.django_db(transaction=True)
def test_sealing_holds_no_lock_after_its_transaction():
    # given: a transaction to seal (the sealer is single through an advisory lock)
    transaction_post(postings=[PostingInput("world", "bank:platform", "USD/2", 100)])

    # when
    transactions_seal()

    # then: no advisory lock survives the transaction (a session lock would, and behind
    # PgBouncer it would stay on a server connection another client then gets). Only this
    # database's locks: other databases on the server (benchmarks) take their own.
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'"
            " AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"
        )
        assert cursor.fetchone()[0] == 0


def _database_settings(**environment: str) -> list[str]:
    """(server-side cursors disabled, prepare_threshold, server_side_binding) as the settings
    make them in a fresh process with this environment."""
    env = {k: v for k, v in os.environ.items() if k not in ("DB_PGBOUNCER", "DB_PREPARED")}
    env.update(DJANGO_ENV="test", **environment)
    code = (
        "from django.conf import settings;"
        "d = settings.DATABASES['default'];"
        "o = d.get('OPTIONS', {});"
        "print(d.get('DISABLE_SERVER_SIDE_CURSORS', False), o.get('prepare_threshold'),"
        " o.get('server_side_binding', False))"
    )
    result = subprocess.run(
        [sys.executable, "-c", "import django; django.setup();" + code],
        cwd=ROOT,
        env={**env, "DJANGO_SETTINGS_MODULE": "config.settings"},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.split()


def test_pgbouncer_settings_turn_off_prepared_statements_and_server_side_cursors():
    assert _database_settings(DB_PGBOUNCER="1") == ["True", "None", "False"]


def test_postgresql_binds_on_the_server_unless_turned_off():
    # server-side binding lets the hot paths prepare (common.prepared); nothing is prepared
    # by default (prepare_threshold None, as Django leaves it)
    url = "postgres://postgres@127.0.0.1:5432/eats"
    assert _database_settings(DATABASE_URL=url) == ["False", "None", "True"]
    assert _database_settings(DATABASE_URL=url, DB_PREPARED="0") == ["False", "None", "False"]
