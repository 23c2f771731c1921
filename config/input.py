"""The one place where input PostgreSQL would refuse becomes a clear 400 before it reaches the
database, for every endpoint and every parameter:

- `InputGuardMiddleware` checks the path and every query parameter of every request (NUL
  bytes, lone surrogates, oversized values);
- the parsers (`JSONParser`, `FormParser`, `MultiPartParser`, the only ones DRF uses here,
  REST_FRAMEWORK["DEFAULT_PARSER_CLASSES"]) check every string, key and number of a body
  (numbers beyond bigint, NUL, lone surrogates, nesting depth);
- `instant_param` / `choice_param` / `int_param` parse the query parameters views read by hand
  (malformed dates, unknown enum values, integers beyond bigint).
Serializers mirror the database's constraints; config.api.exception_handler is the last resort.
This module imports no DRF view (DRF reads the parser classes while importing its views).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from datetime import datetime
from typing import Any

from django.http import HttpRequest, HttpResponse, HttpResponseBadRequest, JsonResponse
from django.utils.dateparse import parse_datetime
from rest_framework import exceptions, parsers

from config.errors import ApplicationError

BIGINT_MIN = -(2**63)
BIGINT_MAX = 2**63 - 1
# A query parameter longer than this is refused: no filter of this API needs more, and a
# multi-kilobyte value compared against an indexed column is only load.
MAX_QUERY_VALUE_LENGTH = 1000
# JSON bodies nest at most this deep (Python's parser would raise RecursionError, a 500).
MAX_JSON_DEPTH = 32


class InvalidInput(ApplicationError):
    """A value the database could not store or compare: refused before any query."""

    code = "invalid_input"
    http_status = 400


def text_problem(value: str) -> str | None:
    """Why PostgreSQL would refuse `value` as text, or None."""
    if "\x00" in value:
        return "contains a NUL character (PostgreSQL text cannot hold one)"
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return "is not valid Unicode (a lone surrogate)"
    return None


def check_json(value: Any, where: str = "body", depth: int = 0) -> None:
    """Raise InvalidInput if a parsed JSON value holds something the database refuses."""
    if depth > MAX_JSON_DEPTH:
        raise InvalidInput(f"{where} nests deeper than {MAX_JSON_DEPTH} levels.")
    if isinstance(value, str):
        problem = text_problem(value)
        if problem:
            raise InvalidInput(f"{where} {problem}.", extra={"field": where})
    elif isinstance(value, bool) or value is None:
        return
    elif isinstance(value, int):
        if not BIGINT_MIN <= value <= BIGINT_MAX:
            raise InvalidInput(
                f"{where} is beyond a 64-bit integer ({BIGINT_MIN}..{BIGINT_MAX}).",
                code="number_out_of_range",
                extra={"field": where},
            )
    elif isinstance(value, Mapping):
        for key, item in value.items():
            key_problem = text_problem(str(key))
            if key_problem:
                raise InvalidInput(f"a key of {where} {key_problem}.", extra={"field": where})
            check_json(item, f"{where}.{key}", depth + 1)
    elif isinstance(value, list | tuple):
        for index, item in enumerate(value):
            check_json(item, f"{where}[{index}]", depth + 1)


def check_pairs(pairs: Iterable[tuple[str, str]], where: str) -> None:
    """Query parameters and form fields: text only, bounded."""
    for key, value in pairs:
        for text in (key, value):
            problem = text_problem(text)
            if problem:
                raise InvalidInput(f"{where} parameter {key!r} {problem}.", extra={"field": key})
        if len(value) > MAX_QUERY_VALUE_LENGTH:
            raise InvalidInput(
                f"{where} parameter {key!r} is longer than {MAX_QUERY_VALUE_LENGTH} characters.",
                extra={"field": key},
            )


class InputGuardMiddleware:
    """Every request's path and query string, before any view or query runs."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        try:
            problem = text_problem(request.path)
            if problem:
                raise InvalidInput(f"The path {problem}.", extra={"field": "path"})
            check_pairs(_flat(request.GET.lists()), "query")
        except InvalidInput as exc:
            if request.path.startswith("/api/"):
                return JsonResponse(exc.as_dict(), status=exc.http_status)
            return HttpResponseBadRequest(exc.message, content_type="text/plain")
        return self.get_response(request)


def _flat(lists: Iterable[tuple[str, list[str]]]) -> list[tuple[str, str]]:
    return [(key, value) for key, values in lists for value in values]


class JSONParser(parsers.JSONParser):
    def parse(self, stream: Any, media_type: Any = None, parser_context: Any = None) -> Any:
        try:
            data = super().parse(stream, media_type, parser_context)
        except RecursionError:
            raise exceptions.ParseError("JSON parse error - nested too deeply.") from None
        check_json(data)
        return data


class FormParser(parsers.FormParser):
    def parse(self, stream: Any, media_type: Any = None, parser_context: Any = None) -> Any:
        data = super().parse(stream, media_type, parser_context)
        check_pairs(_flat(data.lists()), "form")
        return data


class MultiPartParser(parsers.MultiPartParser):
    def parse(self, stream: Any, media_type: Any = None, parser_context: Any = None) -> Any:
        result = super().parse(stream, media_type, parser_context)
        check_pairs(_flat(result.data.lists()), "form")
        return result


# --- query parameters read by hand ----------------------------------------------------------


def instant_param(params: Mapping[str, str], name: str) -> datetime | None:
    """An ISO-8601 instant with a zone, or None when absent; InvalidInput otherwise."""
    raw = params.get(name)
    if raw in (None, ""):
        return None
    assert raw is not None
    try:
        value = parse_datetime(raw.replace(" ", "+"))  # a '+' in a query string arrives as ' '
    except ValueError:  # well formed but not a date (2024-02-30)
        value = None
    if value is None or value.tzinfo is None:
        raise InvalidInput(
            f"Invalid {name} {raw!r}: expected ISO-8601 with a time zone, e.g. "
            "2024-05-01T12:00:00Z.",
            code="invalid_timestamp",
            extra={"field": name},
        )
    return value


def choice_param(params: Mapping[str, str], name: str, choices: Iterable[str]) -> str | None:
    """One of `choices` or None when absent; a 400 `invalid` (as a serializer's) otherwise."""
    raw = params.get(name)
    if raw in (None, ""):
        return None
    allowed = list(choices)
    if raw not in allowed:
        raise exceptions.ValidationError({name: [f"expected one of {', '.join(allowed)}"]})
    return raw


def int_param(params: Mapping[str, str], name: str, *, minimum: int = 0) -> int | None:
    raw = params.get(name)
    if raw in (None, ""):
        return None
    assert raw is not None
    # isascii: str.isdigit() also accepts "²", which int() refuses.
    if not (raw.isascii() and raw.isdigit()) or not minimum <= int(raw) <= BIGINT_MAX:
        raise exceptions.ValidationError(
            {name: [f"expected an integer from {minimum} to {BIGINT_MAX}"]}
        )
    return int(raw)
