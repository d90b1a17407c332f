"""The API's pagination: `limit` (1-100, default 20) and `offset`, both bounded, so a huge number
is a clear error naming the parameter instead of a database error."""

from __future__ import annotations

from typing import Any

from rest_framework import serializers
from rest_framework.pagination import LimitOffsetPagination
from rest_framework.request import Request

MAX_OFFSET = 1_000_000_000


def _whole_number(request: Request, name: str, default: int, *, minimum: int, maximum: int | None = None) -> int:
    raw = request.query_params.get(name)
    if raw is None:
        return default
    try:
        number = int(raw)
    except (TypeError, ValueError):
        raise serializers.ValidationError({name: ["A whole number is required."]}) from None
    if number < minimum or (maximum is not None and number > maximum):
        bounds = f"between {minimum} and {maximum}" if maximum is not None else f"at least {minimum}"
        raise serializers.ValidationError({name: [f"Must be {bounds}."]})
    return number


class BoundedLimitOffsetPagination(LimitOffsetPagination):
    default_limit = 20
    max_limit = 100  # a larger limit is served as 100

    def get_limit(self, request: Request) -> int:
        # DRF serves a malformed limit as the default; refusing it keeps the schema honest (an
        # integer of at least 1) and tells the client its mistake.
        return min(_whole_number(request, self.limit_query_param, self.default_limit, minimum=1), self.max_limit)

    def get_offset(self, request: Request) -> int:
        return _whole_number(request, self.offset_query_param, 0, minimum=0, maximum=MAX_OFFSET)

    def get_schema_operation_parameters(self, view: Any) -> list[dict[str, Any]]:
        limit, offset = super().get_schema_operation_parameters(view)
        limit["description"] = (
            f"Items per page: at least 1, default {self.default_limit}; "
            f"more than {self.max_limit} is served as {self.max_limit}."
        )
        limit["schema"] = {"type": "integer", "minimum": 1}
        offset["schema"] = {"type": "integer", "minimum": 0, "maximum": MAX_OFFSET}
        return [limit, offset]
