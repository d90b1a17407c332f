"""Errors the generation services raise."""

from __future__ import annotations

from config.errors import ServiceError, ValidationFailed

__all__ = ["IdempotencyConflict", "InvalidJobStatus", "NothingToDownload", "ServiceError", "ValidationFailed"]


class InvalidJobStatus(ServiceError):
    status_code = 409
    code = "INVALID_JOB_STATUS"


class IdempotencyConflict(ServiceError):
    status_code = 422
    code = "IDEMPOTENCY_CONFLICT"


class NothingToDownload(ServiceError):
    status_code = 409
    code = "NO_OUTPUTS"
