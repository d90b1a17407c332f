"""Byte ranges for stored files, so a `<video>` can seek without downloading the whole clip.

Django's FileResponse always answers the whole file. A browser playing a clip asks for
`Range: bytes=N-` when the person seeks; answering 206 with just those bytes lets it jump there
at once. One range is served; anything else (several ranges, a malformed header) gets the whole
file, as RFC 9110 allows. S3 storage never comes here: its signed URLs serve ranges themselves.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import IO, Any

from django.core.files.storage import default_storage
from django.http import FileResponse, HttpResponseBase, JsonResponse, StreamingHttpResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse
from rest_framework.negotiation import BaseContentNegotiation, DefaultContentNegotiation

from config.api_errors import error_body
from config.schema import ErrorSerializer

_SINGLE_RANGE = re.compile(r"^bytes=(\d*)-(\d*)$")
_CHUNK = 256 * 1024


def ranged_file_response(
    name: str, *, range_header: str, filename: str, content_type: str, as_attachment: bool
) -> HttpResponseBase:
    wanted = _SINGLE_RANGE.match(range_header.strip()) if range_header else None
    if wanted is None or not (wanted[1] or wanted[2]):
        response: HttpResponseBase = FileResponse(
            default_storage.open(name, "rb"), filename=filename, content_type=content_type, as_attachment=as_attachment
        )
        response["Accept-Ranges"] = "bytes"
        return response
    size = default_storage.size(name)
    if wanted[1]:
        start = int(wanted[1])
        end = min(int(wanted[2]), size - 1) if wanted[2] else size - 1
    else:  # "bytes=-N": the last N bytes
        start, end = max(0, size - int(wanted[2])), size - 1
    if start >= size or start > end:
        return JsonResponse(
            error_body(
                "RANGE_NOT_SATISFIABLE", f"The file has {size} bytes; the range begins after them.", {"size": size}
            ),
            status=416,
            headers={"Content-Range": f"bytes */{size}"},
        )
    source = default_storage.open(name, "rb")
    source.seek(start)
    response = StreamingHttpResponse(_read(source, end - start + 1), status=206, content_type=content_type)
    response["Content-Range"] = f"bytes {start}-{end}/{size}"
    response["Content-Length"] = str(end - start + 1)
    response["Accept-Ranges"] = "bytes"
    return response


def _read(source: IO[bytes], length: int) -> Iterator[bytes]:
    try:
        while length > 0:
            chunk = source.read(min(_CHUNK, length))
            if not chunk:
                return
            length -= len(chunk)
            yield chunk
    finally:
        source.close()


# How the API documents a view that answers with ranged_file_response.
RANGE_HEADER = OpenApiParameter(
    "Range",
    str,
    OpenApiParameter.HEADER,
    required=False,
    description="`bytes=<first>-<last>`, `bytes=<first>-` or `bytes=-<last n>`: that range of the file (206). "
    "Anything else, several ranges included, is answered with the whole file.",
)


def file_responses(media_types: tuple[str, ...], description: str) -> dict:
    """The `responses` of a stored file: the whole file (200), one range of it (206), a range
    beyond its end (416), or, with S3 storage, a redirect to a short-lived signed URL (302)."""
    responses: dict = {}
    for media_type in media_types:
        responses[(200, media_type)] = OpenApiResponse(OpenApiTypes.BINARY, description=description)
        responses[(206, media_type)] = OpenApiResponse(OpenApiTypes.BINARY, description="The range asked for")
    responses[302] = OpenApiResponse(description="With S3 storage: to a short-lived signed URL of the file")
    responses[416] = OpenApiResponse(
        ErrorSerializer, description="`RANGE_NOT_SATISFIABLE`: the range starts beyond the file's end"
    )
    return responses


class FileNegotiation(BaseContentNegotiation):
    """A file view answers with the file's own type whatever the Accept header asks for
    (`Accept: image/png` is a fair request for an image), and its errors in JSON. DRF's own
    negotiation knows only the JSON renderer and would refuse such a request with a 406."""

    never_refuses = True  # config/schema.py documents no 406 for these views

    def select_parser(self, request: Any, parsers: Any) -> Any:
        return DefaultContentNegotiation().select_parser(request, parsers)

    def select_renderer(self, request: Any, renderers: Any, format_suffix: str | None = None) -> tuple[Any, str]:
        return renderers[0], renderers[0].media_type
