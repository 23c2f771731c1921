"""`manage.py numscript check|run` (no database involved)."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

SCRIPT = """vars { monetary $amt }
send $amt ( source = { @alice @bob } destination = { 1/3 to @a remaining to @b } )
set_tx_meta("paid", $amt)
"""


@pytest.fixture
def script(tmp_path: Path) -> Path:
    path = tmp_path / "pay.num"
    path.write_text(SCRIPT)
    return path


def _inputs(path: Path, **document: object) -> Path:
    path.write_text(json.dumps(document))
    return path


def test_check_clean_file(script: Path) -> None:
    out = io.StringIO()
    call_command("numscript", "check", str(script), stdout=out)
    assert out.getvalue().strip() == f"{script}: no problems found"


def test_check_reports_errors_like_a_compiler_and_fails(tmp_path: Path) -> None:
    bad = tmp_path / "bad.num"
    bad.write_text("send $amt ( source = @a destination = @b )\n")
    err = io.StringIO()
    with pytest.raises(CommandError, match="has errors"):
        call_command("numscript", "check", str(bad), stdout=io.StringIO(), stderr=err)
    assert err.getvalue().startswith(
        f"{bad}:1:6: error: unbound variable $amt\nsend $amt ( source = @a destination = @b )\n"
        "     ^~~~"
    )


def test_run_with_default_inputs_file_prints_tables(script: Path) -> None:
    _inputs(
        Path(f"{script}.inputs.json"),
        variables={"amt": "USD/2 100"},
        balances=[
            {"account": "alice", "asset": "USD/2", "amount": 60},
            {"account": "bob", "asset": "USD/2", "amount": 60},
        ],
    )
    out = io.StringIO()
    call_command("numscript", "run", str(script), stdout=out)
    text = out.getvalue()
    assert text.startswith("Postings:\n┌────────┬─────────────┬───────┬────────┐\n")
    assert "│ alice  │ a           │ USD/2 │ 34     │" in text
    assert "│ bob    │ b           │ USD/2 │ 40     │" in text
    assert "│ paid │ USD/2 100 │" in text


def test_run_json_output(script: Path, tmp_path: Path) -> None:
    inputs = _inputs(
        tmp_path / "in.json",
        variables={"amt": "USD/2 3"},
        balances=[{"account": "alice", "asset": "USD/2", "amount": 99999999999999999999999}],
    )
    out = io.StringIO()
    call_command("numscript", "run", str(script), "--inputs", str(inputs), "--json", stdout=out)
    assert json.loads(out.getvalue()) == {
        "postings": [
            {"source": "alice", "destination": "a", "amount": 1, "asset": "USD/2"},
            {"source": "alice", "destination": "b", "amount": 2, "asset": "USD/2"},
        ],
        "txMeta": {"paid": "USD/2 3"},
        "accountsMeta": {},
    }


def test_run_error_is_rendered_and_fails(script: Path, tmp_path: Path) -> None:
    inputs = _inputs(tmp_path / "in.json", variables={"amt": "USD/2 3"})
    err = io.StringIO()
    with pytest.raises(CommandError, match="MissingFundsError"):
        call_command("numscript", "run", str(script), "--inputs", str(inputs), stderr=err)
    assert err.getvalue().startswith(f"{script}:2:22: error: not enough funds")


def test_run_with_invalid_inputs_file(script: Path, tmp_path: Path) -> None:
    row = {"account": "alice", "asset": "USD/2", "amount": 1}
    inputs = _inputs(tmp_path / "in.json", balances=[row, row])
    with pytest.raises(CommandError, match="duplicate entry"):
        call_command("numscript", "run", str(script), "--inputs", str(inputs))
