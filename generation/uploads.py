"""Uploads larger than UPLOAD_MAX_BYTES are dropped while they stream in, before they reach the
disk; the field's name is noted on the request so the view can say which file was too large."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.files.uploadhandler import FileUploadHandler, SkipFile
from django.http import HttpRequest


class SizeLimitUploadHandler(FileUploadHandler):
    def new_file(self, field_name: str, *args: Any, **kwargs: Any) -> None:
        super().new_file(field_name, *args, **kwargs)
        self.received = 0

    def receive_data_chunk(self, raw_data: bytes, start: int) -> bytes:
        self.received += len(raw_data)
        if self.received > settings.UPLOAD_MAX_BYTES:
            oversized_uploads(self.request).add(self.field_name)
            raise SkipFile  # the rest of this file is read and thrown away, never stored
        return raw_data  # let the next handler (memory or temporary file) keep it

    def file_complete(self, file_size: int) -> None:
        return None


def oversized_uploads(request: HttpRequest | None) -> set[str]:
    if request is None:
        return set()
    if not hasattr(request, "_oversized_uploads"):
        request._oversized_uploads = set()  # type: ignore[attr-defined]
    return request._oversized_uploads  # type: ignore[attr-defined,no-any-return]


def too_large_message() -> str:
    limit = settings.UPLOAD_MAX_BYTES
    size = f"{limit // (1024 * 1024)} MB" if limit >= 1024 * 1024 else f"{limit // 1024} KB"
    return f"The file is larger than {size}."
