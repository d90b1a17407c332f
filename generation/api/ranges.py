"""Byte ranges for stored files, so a `<video>` can seek without downloading the whole clip.

Django's FileResponse always answers the whole file. A browser playing a clip asks for
`Range: bytes=N-` when the person seeks; answering 206 with just those bytes lets it jump there
at once. One range is served; anything else (several ranges, a malformed header) gets the whole
file, as RFC 9110 allows. S3 storage never comes here: its signed URLs serve ranges themselves.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import IO

from django.core.files.storage import default_storage
from django.http import FileResponse, HttpResponse, HttpResponseBase, StreamingHttpResponse

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
        return HttpResponse(status=416, headers={"Content-Range": f"bytes */{size}"})
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
