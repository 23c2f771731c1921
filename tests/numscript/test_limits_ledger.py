"""Every Numscript limit through the ledger API (400, nothing written) and the CLI (a
compiler-style message, exit status 1), with the limits set from Django settings."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from rest_framework.test import APIClient

from ledger.models import Transaction
from ledger.numscript import limits, parser
from tests.auth import make_user, session_client
from tests.ledger.helpers import table_counts

pytestmark = pytest.mark.django_db

URL = "/api/v1/ledger/transactions/"
SEND = "send [USD/2 1] ( source = {source} destination = {destination} )"


def _send(source: str = "@world", destination: str = "@b") -> str:
    return SEND.format(source=source, destination=destination)


@pytest.fixture(autouse=True)
def _no_sealer(settings) -> None:
    settings.LEDGER_SEAL_ON_COMMIT = False


@pytest.fixture
def client(db) -> APIClient:
    """A Finance admin (holds ledger.post_transaction), signed in."""
    return session_client(make_user("finance", roles=["Finance admin"]))


# (settings, script, error class, message start, (line, column) or None)
CASES = [
    (
        {"NUMSCRIPT_MAX_SCRIPT_BYTES": 100},
        _send() + " " * 100,
        "LimitExceeded",
        "script too large: expected at most 100 bytes of script, found 151",
        None,
    ),
    (
        {},
        'set_tx_meta("k", ' + "(" * 300 + "1" + ")" * 300 + ")",
        "NestingTooDeep",
        "expected at most 50 levels of nesting, found level 51",
        (1, 68),
    ),
    (
        {"NUMSCRIPT_MAX_DEPTH": 5},
        _send(source="{ { { { { { @a } } } } } }"),
        "NestingTooDeep",
        "expected at most 5 levels of nesting, found level 6",
        (1, 37),  # the sixth '{'
    ),
    (
        {"NUMSCRIPT_MAX_STATEMENTS": 2},
        "\n".join([_send()] * 3),
        "LimitExceeded",
        "script too large: expected at most 2 statements, found 3",
        (3, 1),
    ),
    (
        {"NUMSCRIPT_MAX_SOURCES": 2},
        _send(source="{ @a @world }"),
        "LimitExceeded",
        "script too large: expected at most 2 sources in one send, found more",
        (1, 32),
    ),
    (
        {"NUMSCRIPT_MAX_DESTINATIONS": 2},
        _send(destination="{ 1/2 to @b remaining to @c }"),
        "LimitExceeded",
        "script too large: expected at most 2 destinations in one send, found more",
        (1, 57),
    ),
    (
        {"NUMSCRIPT_MAX_BRANCHES": 2},
        '#![feature("experimental-oneof")]\n' + _send(source="oneof { @a @b @world }"),
        "LimitExceeded",
        "script too large: expected at most 2 branches in one 'oneof', found more",
        (2, 41),
    ),
    (
        {"NUMSCRIPT_MAX_STEPS": 20},
        "\n".join(f'set_tx_meta("k{i}", 1 + 1)' for i in range(10)) + "\n" + _send(),
        "StepBudgetExceeded",
        "script too costly: expected at most 20 execution steps, the run needed more",
        (5, 1),
    ),
    (
        {},
        "send [USD/2 " + "9" * 5_000 + "] ( source = @world destination = @b )",
        "NumberOutOfRange",
        "number out of range: expected an integer between -(2**256 - 1) and 2**256 - 1, "
        "found a 5000-digit number",
        (1, 13),
    ),
]
IDS = [
    "size",
    "depth-expression",
    "depth-source",
    "statements",
    "sources",
    "destinations",
    "branches",
    "steps",
    "number",
]


@pytest.mark.parametrize(("overrides", "script", "error", "message", "position"), CASES, ids=IDS)
@pytest.mark.parametrize("dry_run", [False, True])
def test_api_refuses_with_400_and_writes_nothing(
    client, settings, overrides, script, error, message, position, dry_run
):
    # given
    for name, value in overrides.items():
        setattr(settings, name, value)
    before = table_counts()

    # when
    response = client.post(URL, {"script": {"plain": script}, "dry_run": dry_run}, format="json")

    # then
    assert response.status_code == 400, response.content
    body = response.json()
    assert body["code"] == "script_error"
    assert body["error"] == error
    assert body["message"].startswith(f"{error}: ")
    assert message in body["message"]
    line, column = position or (0, 0)
    assert (body["line"], body["column"]) == (line, column)
    assert table_counts() == before


def test_api_step_budget_failure_leaves_no_account_metadata(client, settings):
    # given: metadata set before the budget runs out
    settings.NUMSCRIPT_MAX_STEPS = 10
    script = 'set_account_meta(@shop, "k", "v")\n' + "\n".join(
        f'set_tx_meta("k{i}", 1 + 1)' for i in range(10)
    )
    before = table_counts()

    # when
    response = client.post(URL, {"script": {"plain": script}}, format="json")

    # then
    assert response.status_code == 400
    assert response.json()["error"] == "StepBudgetExceeded"
    assert table_counts() == before


def test_settings_are_the_interpreters_limits(settings):
    assert limits.current() == limits.DEFAULT_LIMITS
    assert parser.PARSE_CACHE.max_bytes == 1024 * 1024
    settings.NUMSCRIPT_MAX_DEPTH = 7
    settings.NUMSCRIPT_MAX_STEPS = 99
    assert (limits.current().max_depth, limits.current().max_steps) == (7, 99)
    settings.NUMSCRIPT_PARSE_CACHE_BYTES = 5_000
    assert parser.PARSE_CACHE.max_bytes == 5_000


def test_a_script_within_the_limits_still_posts(client):
    response = client.post(URL, {"script": {"plain": _send()}}, format="json")
    assert response.status_code == 201
    assert Transaction.objects.count() == 1


def test_script_dry_run_answers_200_and_writes_nothing(client):
    # given
    before = table_counts()

    # when
    response = client.post(URL, {"script": {"plain": _send()}, "dry_run": True}, format="json")

    # then
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["dry_run"] is True
    assert body["transaction"]["id"] is None
    assert body["transaction"]["postings"] == [
        {"source": "world", "destination": "b", "asset": "USD/2", "amount": 1}
    ]
    assert table_counts() == before


@pytest.mark.parametrize("write_path", ["postgres", "portable"])
def test_script_volumes_beyond_bigint_are_a_400(client, settings, write_path):
    # given: @b already holds the largest storable amount
    settings.LEDGER_WRITE_PATH = write_path
    script = f"send [USD/2 {2**63 - 1}] ( source = @world destination = @b )"
    assert client.post(URL, {"script": {"plain": script}}, format="json").status_code == 201
    before = table_counts()

    # when
    response = client.post(URL, {"script": {"plain": script}}, format="json")

    # then
    assert response.status_code == 400, response.content
    assert response.json()["code"] == "invalid_amount"
    assert table_counts() == before


# --- the CLI -----------------------------------------------------------------------------


@pytest.mark.parametrize(("overrides", "script", "error", "message", "position"), CASES, ids=IDS)
def test_cli_run_prints_the_limit_like_a_compiler(
    tmp_path: Path, settings, overrides, script, error, message, position
):
    # given
    for name, value in overrides.items():
        setattr(settings, name, value)
    path = tmp_path / "hostile.num"
    path.write_text(script)
    inputs = tmp_path / "in.json"
    inputs.write_text("{}")
    err = io.StringIO()

    # when
    with pytest.raises(CommandError, match=error) as info:
        call_command("numscript", "run", str(path), "--inputs", str(inputs), stderr=err)

    # then
    assert info.value.returncode == 1
    if position is None:
        assert err.getvalue().strip() == f"{path}: error: {message}"
    else:
        line, column = position
        first, source_line, underline = err.getvalue().rstrip("\n").split("\n")[:3]
        assert first == f"{path}:{line}:{column}: error: {message}"
        assert source_line == script.split("\n")[line - 1]
        assert underline.startswith(" " * (column - 1) + "^")


def test_cli_run_against_the_ledger_refuses_over_budget_and_writes_nothing(
    tmp_path: Path, settings
):
    # given: no inputs file, so the script runs against the ledger database
    settings.NUMSCRIPT_MAX_STEPS = 20
    path = tmp_path / "costly.num"
    path.write_text(CASES[7][1])
    before = table_counts()
    err = io.StringIO()

    # when
    with pytest.raises(CommandError, match="StepBudgetExceeded"):
        call_command("numscript", "run", str(path), stderr=err)

    # then
    assert err.getvalue().startswith(f"{path}:5:1: error: script too costly")
    assert table_counts() == before


def test_cli_check_reports_the_limit(tmp_path: Path, settings):
    settings.NUMSCRIPT_MAX_STATEMENTS = 2
    path = tmp_path / "long.num"
    path.write_text(CASES[3][1])
    err = io.StringIO()
    with pytest.raises(CommandError, match="has errors"):
        call_command("numscript", "check", str(path), stdout=io.StringIO(), stderr=err)
    assert err.getvalue().startswith(
        f"{path}:3:1: error: script too large: expected at most 2 statements, found 3\n"
    )
