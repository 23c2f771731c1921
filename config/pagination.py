"""The API's pagination: every paginated list uses one of these two classes, so every list has
a bounded page and refuses (400) what the database could not take.

- `LimitOffsetPagination`: `?limit=` (1 to 2**63-1, pages capped at `max_limit`) and
  `?offset=` (0 to 2**63-1); anything else is a 400. The envelope is
  `{"count", "next", "previous", "results"}`.
- `CursorPagination`: `?cursor=` (opaque; a tampered cursor is a 404 "Invalid cursor", as
  DRF answers) and `?page_size=` (capped at `max_page_size`). For large, append-only tables
  (no COUNT). The envelope is `{"next", "previous", "results"}`.
"""

from __future__ import annotations

from typing import Any

from rest_framework import pagination
from rest_framework.exceptions import NotFound
from rest_framework.request import Request

from config.input import BIGINT_MAX, int_param


class LimitOffsetPagination(pagination.LimitOffsetPagination):
    default_limit = 100
    max_limit = 1000

    def get_limit(self, request: Request) -> int:
        limit = int_param(request.query_params, self.limit_query_param, minimum=1)
        if limit is None:
            return self.default_limit
        return min(limit, self.max_limit)

    def get_offset(self, request: Request) -> int:
        return int_param(request.query_params, self.offset_query_param) or 0

    def get_schema_operation_parameters(self, view: Any) -> list[dict[str, Any]]:
        params = super().get_schema_operation_parameters(view)
        for param in params:
            if param["name"] == self.limit_query_param:
                param["description"] = (
                    f"Number of results to return per page (default {self.default_limit}, "
                    f"capped at {self.max_limit})."
                )
                param["schema"] = {"type": "integer", "minimum": 1, "maximum": BIGINT_MAX}
            elif param["name"] == self.offset_query_param:
                param["schema"] = {"type": "integer", "minimum": 0, "maximum": BIGINT_MAX}
        return params


class CursorPagination(pagination.CursorPagination):
    ordering = "-id"
    page_size = 100
    max_page_size = 1000
    page_size_query_param = "page_size"

    def get_page_size(self, request: Request) -> int:
        size = int_param(request.query_params, self.page_size_query_param, minimum=1)
        if size is None:
            return self.page_size
        return min(size, self.max_page_size)

    def decode_cursor(self, request: Request) -> Any:
        cursor = super().decode_cursor(request)
        # The position is compared with the ordering column (an integer id here): a cursor
        # whose position is not one is a tampered cursor, not a server error.
        if cursor is not None and cursor.position is not None:
            position = str(cursor.position)
            if not (position.lstrip("-").isascii() and position.lstrip("-").isdigit()) or not (
                -BIGINT_MAX <= int(position) <= BIGINT_MAX
            ):
                raise NotFound(self.invalid_cursor_message)
        if cursor is not None and cursor.offset > BIGINT_MAX:
            raise NotFound(self.invalid_cursor_message)
        return cursor

    def get_schema_operation_parameters(self, view: Any) -> list[dict[str, Any]]:
        params = super().get_schema_operation_parameters(view)
        for param in params:
            if param["name"] == self.page_size_query_param:
                param["description"] = (
                    f"Number of results per page (default {self.page_size}, capped at "
                    f"{self.max_page_size})."
                )
                param["schema"] = {"type": "integer", "minimum": 1, "maximum": BIGINT_MAX}
        return params
