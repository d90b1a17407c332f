"""The OpenAPI document's error responses, added in one place rather than per view.

Every API error has one shape (config/api_errors.py), the `Error` component. `ApiAutoSchema`
gives each operation the errors that follow from what it is, so a new view is documented
without work of its own:

- 400 VALIDATION_ERROR / PARSE_ERROR when it takes a body or query parameters;
- 401 and 403 when it needs authentication;
- 404 when its path has an id (another team's ids are "not found" too);
- 406 when its Accept header admits none of its media types;
- 413 and 415 when it takes a body;
- 429 THROTTLED with `Retry-After` when a rate limit applies to it;
- 414 from the web server (not in the error shape) when its address has parameters in it.

A view that sets `pagination_class` gets its list documented inside the paginator's envelope
(`count`, `next`, `previous`, `results`) and its `limit` and `offset` parameters.
A view declares the errors only it can give with `error_responses(InsufficientCredits, ...)`,
from the very `ServiceError` classes its services raise, so their codes cannot drift.
A request serializer with `refuses_unknown_fields = True` (config/serializers.py's
StrictSerializer) is marked `additionalProperties: false`, as the API refuses a field it does not know.
"""

from __future__ import annotations

from typing import Any

from drf_spectacular.openapi import AutoSchema
from drf_spectacular.plumbing import ResolvedComponent
from drf_spectacular.utils import OpenApiResponse
from rest_framework import serializers

from config.errors import ServiceError


class ErrorInfoSerializer(serializers.Serializer):
    code = serializers.CharField(help_text="Stable and machine-readable: VALIDATION_ERROR, NOT_FOUND, ...")
    message = serializers.CharField(help_text="What went wrong, for people.")
    details = serializers.DictField(
        help_text="Depends on the code: the messages by field path (`params.seed`) for VALIDATION_ERROR, "
        "`required` and `available` for INSUFFICIENT_CREDITS, `quota`, `limit` and `used` for QUOTA_EXCEEDED, "
        "`wait` (seconds) for THROTTLED; empty otherwise."
    )


class ErrorSerializer(serializers.Serializer):
    """The shape of every error the API answers."""

    error = ErrorInfoSerializer()


ErrorClass = type[ServiceError]


def _describe(error: ErrorClass | tuple[ErrorClass, str]) -> tuple[int, str]:
    error_class, meaning = error if isinstance(error, tuple) else (error, "")
    return error_class.status_code, f"`{error_class.code}`" + (f": {meaning}" if meaning else "")


def error_responses(*errors: ErrorClass | tuple[ErrorClass, str]) -> dict[int, OpenApiResponse]:
    """The `responses` of `extend_schema` for the errors a view's services raise, by status:
    `error_responses(InsufficientCredits, (InvalidJobStatus, "the job has finished"))`."""
    by_status: dict[int, list[str]] = {}
    for error in errors:
        status_code, line = _describe(error)
        by_status.setdefault(status_code, []).append(line)
    return {
        status_code: OpenApiResponse(ErrorSerializer, description="; ".join(lines))
        for status_code, lines in by_status.items()
    }


def _needs_authentication(operation: dict[str, Any]) -> bool:
    security = operation.get("security") or []
    return bool(security) and {} not in security  # `{}` marks authentication as optional


def _takes_input(operation: dict[str, Any]) -> bool:
    parameters = operation.get("parameters") or []
    return "requestBody" in operation or any(parameter["in"] == "query" for parameter in parameters)


class ApiAutoSchema(AutoSchema):
    def get_operation(
        self, path: str, path_regex: str, path_prefix: str, method: str, registry: Any
    ) -> dict[str, Any] | None:
        operation = super().get_operation(path, path_regex, path_prefix, method, registry)
        if operation is None:
            return None
        responses = operation["responses"]
        for status_code, description in self._errors_of(path, operation):
            self._add_error(responses, status_code, description)
        if any(parameter["in"] in ("path", "query") for parameter in operation.get("parameters", [])):
            # Before the API: gunicorn (or a proxy in front of it) refuses a request line over its
            # limit, 4,094 bytes by default, with a page of its own.
            responses["414"] = {
                "description": "The address with its query is longer than the web server takes",
                "content": {"text/html": {"schema": {"type": "string"}}},
            }
        operation["responses"] = dict(sorted(responses.items()))
        return operation

    def _errors_of(self, path: str, operation: dict[str, Any]) -> list[tuple[str, str]]:
        """The errors this operation can give whatever its view does (the module's docstring)."""
        errors = []
        if _takes_input(operation):
            errors.append(
                (
                    "400",
                    "`VALIDATION_ERROR`: the messages by field path are in `details`; "
                    "`PARSE_ERROR`: the body is not JSON, or nests deeper than 32 levels",
                )
            )
        if _needs_authentication(operation):
            errors.append(("401", "`NOT_AUTHENTICATED`: no API key or session, or the key is not valid"))
            errors.append(
                ("403", "`PERMISSION_DENIED`: the session belongs to no team, or a session's CSRF token is missing")
            )
        if "{" in path:
            errors.append(("404", "`NOT_FOUND`: no such resource in the team"))
        if "requestBody" in operation:
            errors.append(("413", "`REQUEST_TOO_LARGE`: the body is over the limit (`details.limit_bytes`)"))
            errors.append(("415", "`UNSUPPORTED_MEDIA_TYPE`: the body is not of a media type listed here"))
        if not getattr(self.view.content_negotiation_class, "never_refuses", False):
            errors.append(("406", "`NOT_ACCEPTABLE`: the Accept header admits no media type listed here"))
        if getattr(self.view, "throttle_classes", None):
            errors.append(("429", "`THROTTLED`: too many requests; try again after `Retry-After` seconds"))
        return errors

    def _add_error(self, responses: dict[str, Any], status_code: str, description: str) -> None:
        existing = responses.get(status_code)
        if existing is not None:
            # The view declared this status already (a 409 of its own, say): both meanings apply
            # when the view's is the error shape too.
            if existing.get("content", {}).get("application/json", {}).get("schema") == self._error_ref():
                existing["description"] = f"{existing['description']}; {description}"
            return
        response = self._get_response_for_code(
            OpenApiResponse(ErrorSerializer, description=description), status_code, ["application/json"]
        )
        if status_code == "429":
            response["headers"] = {
                "Retry-After": {
                    "schema": {"type": "integer", "minimum": 1},
                    "description": "Seconds to wait before the next request.",
                }
            }
        responses[status_code] = response

    def _get_pagination_parameters(self) -> list[dict[str, Any]]:
        # A view with an envelope of its own around a page (GET /api/v1/credits) takes limit and
        # offset too, though its response is not a list.
        paginator = self._get_paginator()
        if self.method == "GET" and paginator is not None:
            return list(paginator.get_schema_operation_parameters(self.view))
        return list(super()._get_pagination_parameters())

    def _map_basic_serializer(self, serializer: Any, direction: Any) -> dict[str, Any]:
        schema: dict[str, Any] = super()._map_basic_serializer(serializer, direction)
        if direction == "request" and getattr(serializer, "refuses_unknown_fields", False):
            schema["additionalProperties"] = False
        return schema

    def _error_ref(self) -> dict[str, str]:
        component: ResolvedComponent = self.resolve_serializer(ErrorSerializer, "response")
        return component.ref
