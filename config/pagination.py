"""The API's pagination: `limit` (1-100, default 20) and `offset`, both bounded, so a huge number
is a clear error naming the parameter instead of a database error."""

from __future__ import annotations

from rest_framework import serializers
from rest_framework.pagination import LimitOffsetPagination
from rest_framework.request import Request

MAX_OFFSET = 1_000_000_000


class BoundedLimitOffsetPagination(LimitOffsetPagination):
    default_limit = 20
    max_limit = 100  # a larger limit is served as 100

    def get_offset(self, request: Request) -> int:
        raw = request.query_params.get(self.offset_query_param, "0")
        try:
            offset = int(raw)
        except (TypeError, ValueError):
            raise serializers.ValidationError({"offset": ["A whole number is required."]}) from None
        if not 0 <= offset <= MAX_OFFSET:
            raise serializers.ValidationError({"offset": [f"Must be between 0 and {MAX_OFFSET}."]})
        return offset
