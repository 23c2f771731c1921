"""The portable path on SQLite itself, as `make demo` runs it: the tests' `both_paths` runs
the portable SQL on PostgreSQL, which accepts what SQLite refuses (a keyword as a column
name, offset-less text timestamps). A short demo day in a subprocess, on a fresh SQLite file:
documents of every model are issued and the check ties."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_a_demo_day_on_sqlite_issues_documents_that_tie(tmp_path: Path) -> None:
    env = {
        **os.environ,
        "DJANGO_ENV": "development",
        "CELERY_EAGER": "1",
        "DATABASE_URL": f"sqlite:///{tmp_path / 'demo.sqlite3'}",
    }
    proc = subprocess.run(
        [sys.executable, "manage.py", "demo", "--orders", "40", "--seed", "3"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )

    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "invoices check: OK" in proc.stdout
    assert "self_billing" in proc.stdout and "commission" in proc.stdout
