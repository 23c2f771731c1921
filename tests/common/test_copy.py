"""COPY into a table (`common.copy`): values come back as written (NULLs, text that needs
escaping, JSON, times), identifiers are quoted, and a failing row is Django's error."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from django.db import IntegrityError, connection, transaction

from common.copy import copy_rows


@pytest.fixture
def table(db: Any) -> str:
    with connection.cursor() as cursor:
        cursor.execute(
            'CREATE TEMP TABLE copy_probe (id int NOT NULL, "order" text, data jsonb, '
            "at timestamptz)"
        )
    return "copy_probe"


def test_rows_come_back_as_written(table: str) -> None:
    # given
    at = datetime(2026, 12, 4, 8, 30, tzinfo=UTC)
    rows = [
        (1, "tab\there, newline\nthere, back\\slash", '{"a": [1, 2]}', at),
        (2, None, None, None),
    ]

    # when
    written = copy_rows(table, ["id", "order", "data", "at"], rows)

    # then
    assert written == 2
    with connection.cursor() as cursor:
        cursor.execute('SELECT id, "order", data, at FROM copy_probe ORDER BY id')
        assert cursor.fetchall() == [
            (1, "tab\there, newline\nthere, back\\slash", '{"a": [1, 2]}', at),
            (2, None, None, None),
        ]  # Django's cursors leave jsonb as text


def test_a_bad_row_raises_djangos_error_and_writes_nothing(table: str) -> None:
    # when
    with pytest.raises(IntegrityError), transaction.atomic():
        copy_rows(table, ["id", "order"], [(1, "fine"), (None, "no id")])

    # then
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM copy_probe")
        assert cursor.fetchone() == (0,)


def test_no_rows_write_nothing(table: str) -> None:
    assert copy_rows(table, ["id"], []) == 0
