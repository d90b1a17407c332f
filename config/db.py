"""Database expressions Django lacks, on both the embedded SQLite and PostgreSQL.

A job's outputs, references and ledger totals ride in the job's own row as JSON
(generation/selectors.py: `job_queryset_for_team`), so the status poll reads one row whatever the
number of images.
"""

from __future__ import annotations

from typing import Any

from django.db.models import Aggregate, F, Func, JSONField


class JSONArrayAgg(Aggregate):
    """The grouped rows as one JSON array (PostgreSQL's JSONB_AGG, SQLite's JSON_GROUP_ARRAY;
    Django ships no portable one)."""

    function = "JSON_GROUP_ARRAY"
    output_field = JSONField()

    def as_postgresql(self, compiler: Any, connection: Any, **extra_context: Any) -> Any:
        return self.as_sql(compiler, connection, function="JSONB_AGG", **extra_context)


class JSONRow(Func):
    """Values as one JSON object under the given keys (PostgreSQL's JSONB_BUILD_OBJECT, SQLite's
    JSON_OBJECT). Django's JSONObject sends its keys as query parameters that PostgreSQL must be
    told are text, so it rebuilds itself with a cast per key on every compile (a quarter of the
    status poll's query, generation/selectors.py). These keys are identifiers, written into the SQL."""

    output_field = JSONField()

    def __init__(self, **values: Any) -> None:
        if not all(key.isidentifier() for key in values):
            raise ValueError(f"JSONRow keys are written into the SQL: identifiers only, not {list(values)}")
        self.keys = list(values)
        super().__init__(*(F(value) if isinstance(value, str) else value for value in values.values()))

    def as_sql(  # type: ignore[override]
        self, compiler: Any, connection: Any, function: str = "JSON_OBJECT", **extra_context: Any
    ) -> tuple[str, list[Any]]:
        parts, params = [], []
        for key, expression in zip(self.keys, self.get_source_expressions(), strict=True):
            sql, expression_params = compiler.compile(expression)
            parts.append(f"'{key}', {sql}")
            params.extend(expression_params)
        return f"{function}({', '.join(parts)})", params

    def as_postgresql(self, compiler: Any, connection: Any, **extra_context: Any) -> tuple[str, list[Any]]:
        return self.as_sql(compiler, connection, function="JSONB_BUILD_OBJECT")
