"""One JSON error shape for the whole API: `{"error": {"code", "message", "details"}}`."""

from __future__ import annotations

import logging
from typing import Any

from django.conf import settings
from django.core.exceptions import PermissionDenied, RequestDataTooBig, TooManyFieldsSent, TooManyFilesSent
from django.http import Http404, HttpRequest, JsonResponse
from rest_framework import exceptions, status
from rest_framework.response import Response
from rest_framework.views import exception_handler

from config.errors import RequestTooLarge, ServerBusy, ServiceError

logger = logging.getLogger(__name__)

_CODES = {
    exceptions.ParseError: "PARSE_ERROR",
    exceptions.AuthenticationFailed: "NOT_AUTHENTICATED",
    exceptions.NotAuthenticated: "NOT_AUTHENTICATED",
    exceptions.PermissionDenied: "PERMISSION_DENIED",
    exceptions.NotFound: "NOT_FOUND",
    exceptions.MethodNotAllowed: "METHOD_NOT_ALLOWED",
    exceptions.NotAcceptable: "NOT_ACCEPTABLE",
    exceptions.UnsupportedMediaType: "UNSUPPORTED_MEDIA_TYPE",
    exceptions.Throttled: "THROTTLED",
}


def error_body(code: str, message: str, details: dict | None = None) -> dict:
    return {"error": {"code": code, "message": message, "details": details or {}}}


def flatten_field_errors(detail: Any, prefix: str = "") -> dict[str, list[str]]:
    """DRF's nested errors as `{"params.seed": ["..."], "inputs.references.0.weight": [...]}`."""
    flat: dict[str, list[str]] = {}
    if isinstance(detail, dict):
        for key, value in detail.items():
            if key == "non_field_errors" and prefix:
                # A nested object's own error (not a dictionary, say) belongs to the object's field.
                flat.update(flatten_field_errors(value, prefix))
                continue
            flat.update(flatten_field_errors(value, f"{prefix}.{key}" if prefix else str(key)))
    elif (
        isinstance(detail, list) and detail and all(isinstance(item, (str, exceptions.ErrorDetail)) for item in detail)
    ):
        flat[prefix or "non_field_errors"] = [str(item) for item in detail]
    elif isinstance(detail, list):
        for position, value in enumerate(detail):
            if value:
                flat.update(flatten_field_errors(value, f"{prefix}.{position}" if prefix else str(position)))
    else:
        flat[prefix or "non_field_errors"] = [str(detail)]
    return flat


# Django's refusals to read a request body (SuspiciousOperation: its own answer is an HTML 400).
_BODY_REFUSALS = (RequestDataTooBig, TooManyFieldsSent, TooManyFilesSent)


def body_error(exc: Exception) -> ServiceError | exceptions.APIException:
    """A refused body for a client: a form's fields over DATA_UPLOAD_MAX_MEMORY_SIZE is a 413,
    too many fields or files a 400."""
    if isinstance(exc, RequestDataTooBig):
        return RequestTooLarge(limit_bytes=settings.DATA_UPLOAD_MAX_MEMORY_SIZE)
    return exceptions.ParseError(f"The request body could not be read: {exc}")


def api_exception_handler(exc: Exception, context: dict) -> Response | None:
    if isinstance(exc, _BODY_REFUSALS):
        exc = body_error(exc)
    if isinstance(exc, ServiceError):
        details = dict(exc.details)
        request = context.get("request")
        for key, value in details.items():
            # Links in details (`top_up_url`) are given as paths; the client gets them absolute.
            if key.endswith("_url") and isinstance(value, str) and value.startswith("/") and request is not None:
                details[key] = request.build_absolute_uri(value)
        # A busy server says when to come back, as a throttle does.
        headers = {"Retry-After": str(exc.retry_after)} if isinstance(exc, ServerBusy) else None
        return Response(error_body(exc.code, exc.message, details), status=exc.status_code, headers=headers)
    if isinstance(exc, Http404):
        exc = exceptions.NotFound()
    elif isinstance(exc, PermissionDenied):
        exc = exceptions.PermissionDenied()
    response = exception_handler(exc, context)
    if response is None:
        return None  # an unexpected error: Django's 500 handler answers (in JSON for the API)
    if isinstance(exc, exceptions.ValidationError):
        fields = flatten_field_errors(exc.detail)
        field, messages = next(iter(fields.items()), ("non_field_errors", ["Invalid input."]))
        response.data = error_body("VALIDATION_ERROR", f"{field}: {messages[0]}", fields)
        response.status_code = status.HTTP_400_BAD_REQUEST
        return response
    assert isinstance(exc, exceptions.APIException)
    code = _CODES.get(type(exc), str(exc.default_code).upper())
    if isinstance(exc, (exceptions.NotAuthenticated, exceptions.AuthenticationFailed)) and response.status_code == 403:
        response.status_code = status.HTTP_401_UNAUTHORIZED
    # DRF sets Throttled.wait in __init__; the stubs do not declare it
    details = {"wait": exc.wait} if isinstance(exc, exceptions.Throttled) else {}  # type: ignore[attr-defined]
    response.data = error_body(code, str(exc.detail), details)
    return response


def _is_api(request: HttpRequest) -> bool:
    return request.path.startswith("/api/")


def json_not_found(request: HttpRequest, exception: Exception | None = None) -> JsonResponse:
    return JsonResponse(error_body("NOT_FOUND", "Not found."), status=404)


def json_bad_request(request: HttpRequest, exception: Exception | None = None) -> JsonResponse:
    """Django's own 400s (a SuspiciousOperation outside a DRF view), in the API's shape."""
    if isinstance(exception, _BODY_REFUSALS):
        error = body_error(exception)
        if isinstance(error, ServiceError):
            return JsonResponse(error_body(error.code, error.message, error.details), status=error.status_code)
        return JsonResponse(error_body("PARSE_ERROR", str(error.detail)), status=400)
    return JsonResponse(error_body("BAD_REQUEST", "The request could not be understood."), status=400)


def json_server_error(request: HttpRequest) -> JsonResponse:
    return JsonResponse(error_body("SERVER_ERROR", "Something went wrong on our side; it has been logged."), status=500)
