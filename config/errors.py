"""The base of the errors services raise; the API maps each to its status and JSON shape."""

from __future__ import annotations


class ServiceError(Exception):
    status_code = 400
    code = "BAD_REQUEST"

    def __init__(self, message: str, *, details: dict | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.details = details or {}


class ValidationFailed(ServiceError):
    """`field_errors` maps a field path (`inputs.source_asset_id`) to its messages."""

    status_code = 400
    code = "VALIDATION_ERROR"

    def __init__(self, field_errors: dict[str, list[str]]) -> None:
        field, messages = next(iter(field_errors.items()))
        super().__init__(f"{field}: {messages[0]}", details=field_errors)
