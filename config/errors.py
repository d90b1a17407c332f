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


class RequestTooLarge(ServiceError):
    """A request body over its limit; it was not read (API_JSON_MAX_BYTES for JSON bodies,
    DATA_UPLOAD_MAX_MEMORY_SIZE for a form's fields)."""

    status_code = 413
    code = "REQUEST_TOO_LARGE"

    def __init__(self, *, limit_bytes: int) -> None:
        size = f"{limit_bytes // 1024} KB" if limit_bytes < 1024 * 1024 else f"{limit_bytes // (1024 * 1024)} MB"
        super().__init__(f"The request body is larger than {size}.", details={"limit_bytes": limit_bytes})


class ServerBusy(ServiceError):
    """The server has no room for the work now (memory for decoding an upload, say); nothing was
    done. `retry_after` seconds: the API sends it as Retry-After."""

    status_code = 503
    code = "SERVER_BUSY"

    def __init__(self, message: str, *, retry_after: int) -> None:
        super().__init__(message, details={"wait": retry_after})
        self.retry_after = retry_after
