"""The access log's lines are gunicorn's own, whatever the format (ops/gunicorn_logging.py
only computes each field when the format reads it)."""

from __future__ import annotations

import logging
import time
from datetime import timedelta
from types import SimpleNamespace
from typing import Any

import pytest
from gunicorn.config import Config
from gunicorn.glogging import Logger

from ops.gunicorn_logging import AccessLogger

EVERY_ATOM = " ".join(
    f"%({atom})s"
    for atom in [
        *[
            "h",
            "l",
            "u",
            "t",
            "r",
            "s",
            "m",
            "U",
            "q",
            "H",
            "b",
            "B",
            "f",
            "a",
            "T",
            "D",
            "M",
            "L",
            "p",
        ],
        "{x-request-id}i",
        "{USER-AGENT}i",
        "{content-type}o",
        "{x-quote}o",
        "{remote_addr}e",
        "{raw_uri}e",
        "{missing}i",
        "{missing}o",
        "{missing}e",
        "zz",
        "{odd}x",
    ]
)


class _Capture(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


def _line(logger_class: type[Logger], access_format: str | None, resp: Any) -> str:
    cfg = Config()
    cfg.set("accesslog", "-")
    if access_format is not None:
        cfg.set("access_log_format", access_format)
    logger = logger_class(cfg)
    capture = _Capture()
    logger.access_log.handlers = [capture]
    request = SimpleNamespace(
        headers=[
            ("HOST", "eats.test"),
            ("USER-AGENT", 'bench "client"/1.0'),
            ("X-REQUEST-ID", "r-1"),
            ("X-REQUEST-ID", "r-2"),
        ]
    )
    environ = {
        "REMOTE_ADDR": "10.0.0.7",
        "REQUEST_METHOD": "POST",
        "RAW_URI": '/api/v1/orders/?q="x"',
        "PATH_INFO": "/api/v1/orders/",
        "QUERY_STRING": 'q="x"',
        "SERVER_PROTOCOL": "HTTP/1.1",
        "HTTP_REFERER": "https://eats.test/staff/",
        "HTTP_USER_AGENT": 'bench "client"/1.0',
        "HTTP_AUTHORIZATION": "Basic ZmluYW5jZTpzZWNyZXQ=",
        "wsgi.input": object(),
    }
    logger.access(resp, request, environ, timedelta(seconds=1, microseconds=23456))
    assert len(capture.lines) == 1
    return capture.lines[0]


@pytest.mark.parametrize("access_format", [None, EVERY_ATOM])
@pytest.mark.parametrize("sent", [512, None])
def test_access_lines_are_gunicorns_own(
    monkeypatch: pytest.MonkeyPatch, access_format: str | None, sent: int | None
) -> None:
    # given: a fixed clock, a response with headers (one with a quote)
    monkeypatch.setattr(time, "strftime", lambda fmt: "[04/Dec/2026:18:00:00 +0000]")
    resp = SimpleNamespace(
        status="201 Created",
        sent=sent,
        headers=[("Content-Type", "application/json"), ("X-Quote", 'say "hi"')],
    )

    # when
    ours = _line(AccessLogger, access_format, resp)
    theirs = _line(Logger, access_format, resp)

    # then
    assert ours == theirs
    assert "finance" in ours


def test_the_served_config_uses_it() -> None:
    from ops import gunicorn_conf

    assert gunicorn_conf.logger_class == "ops.gunicorn_logging.AccessLogger"
