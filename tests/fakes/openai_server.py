"""A fake of OpenAI's Images API, for the real `openai` client (OPENAI_BASE_URL=<url>/v1).

`POST /v1/images/generations` takes JSON; `POST /v1/images/edits` takes multipart/form-data
(`image[]` files, an optional `mask` file, the other fields as text). Both answer as the real API
does for the GPT image models: a base64 image of the size and format asked for, the size, quality,
background and output format it used, and token usage. Errors have the real body shape
`{"error": {"message", "type", "param", "code"}}`; `rate_limited`, `moderation_blocked` and `hang`
make the scripted answers the tests need.

A request with `stream` true is answered as the real API streams images (and as the SDK's
`Stream` reads them): `text/event-stream`, sent in chunks as they are made, one server-sent event
per step, `event: <type>` and `data: <JSON>` with the same `type` inside, a blank line after each:
`partial_images` events `image_generation.partial_image` (`image_edit.partial_image` for an edit)
with `partial_image_index` 0, 1, ..., then one `image_generation.completed`
(`image_edit.completed`) with the image and its usage (100 image output tokens more per partial
image, as OpenAI bills them). A partial image is the size asked for in a paler colour than the
image, so a test can tell the two apart (`PARTIAL_COLOUR`, `IMAGE_COLOUR`); `partial_pause_seconds`
spaces the events out. `stream_breaks_off` and `stream_error` script the streams that go wrong.
"""

from __future__ import annotations

import base64
import email.parser
import email.policy
import io
import json
import time
from dataclasses import dataclass, field
from typing import Any

from PIL import Image

from tests.fakes.server import Answer, FakeServer, Recorded, Scripted, Streamed

GENERATIONS = "/v1/images/generations"
EDITS = "/v1/images/edits"

_PIL_FORMATS = {"png": "PNG", "jpeg": "JPEG", "webp": "WEBP"}
_STANDARD_SIZE = (1024, 1024)  # what "auto" makes here
IMAGE_COLOUR = (90, 140, 210)
PARTIAL_COLOUR = (200, 214, 236)
# OpenAI bills each partial image as this many more image output tokens.
PARTIAL_IMAGE_TOKENS = 100


@dataclass
class FormFile:
    filename: str
    content_type: str
    content: bytes


@dataclass
class EditForm:
    """A multipart edit request as the API reads it."""

    fields: dict[str, str] = field(default_factory=dict)
    images: list[FormFile] = field(default_factory=list)  # the `image[]` parts, in order
    mask: FormFile | None = None


def parse_edit(request: Recorded) -> EditForm:
    """Reads a multipart/form-data body with the standard library's MIME parser."""
    head = f"Content-Type: {request.headers['content-type']}\r\nMIME-Version: 1.0\r\n\r\n".encode()
    message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(head + request.body)
    assert message.is_multipart(), "an edit is multipart/form-data"
    form = EditForm()
    for part in message.iter_parts():  # type: ignore[attr-defined]
        name = part.get_param("name", header="content-disposition")
        payload = part.get_payload(decode=True)
        content = payload if isinstance(payload, bytes) else b""
        filename = part.get_filename()
        if filename is None:
            form.fields[name] = content.decode()
            continue
        uploaded = FormFile(filename=filename, content_type=part.get_content_type(), content=content)
        if name in ("image", "image[]"):
            form.images.append(uploaded)
        elif name == "mask":
            form.mask = uploaded
        else:
            raise AssertionError(f"unexpected file part {name!r}")
    return form


def image_bytes(
    size: tuple[int, int], output_format: str = "png", colour: tuple[int, int, int] = IMAGE_COLOUR
) -> bytes:
    """A real picture in `output_format` (one colour: it compresses to almost nothing)."""
    buffer = io.BytesIO()
    Image.new("RGB", size, colour).save(buffer, format=_PIL_FORMATS[output_format])
    return buffer.getvalue()


def images_response(
    *,
    size: str = "1024x1024",
    quality: str = "medium",
    background: str = "opaque",
    output_format: str = "png",
    revised_prompt: str | None = None,
) -> dict[str, Any]:
    """A 200 body of the Images API for one image. (GPT image models send no revised prompt;
    `revised_prompt` adds one, as models that revise prompts do.)"""
    width, height = _parse_size(size)
    image: dict[str, Any] = {"b64_json": base64.b64encode(image_bytes((width, height), output_format)).decode()}
    if revised_prompt is not None:
        image["revised_prompt"] = revised_prompt
    return {
        "created": int(time.time()),
        "background": background,
        "data": [image],
        "output_format": output_format,
        "quality": quality,
        "size": f"{width}x{height}",
        "usage": {
            "input_tokens": 50,
            "input_tokens_details": {"image_tokens": 40, "text_tokens": 10},
            "output_tokens": 1056,
            "output_tokens_details": {"image_tokens": 1056, "text_tokens": 0},
            "total_tokens": 1106,
        },
    }


def sse_event(data: dict[str, Any]) -> bytes:
    """One server-sent event as OpenAI sends it: its type named twice, on the `event:` line and in the JSON."""
    return f"event: {data['type']}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n".encode()


def image_stream(
    *,
    edit: bool = False,
    partial_images: int = 2,
    size: str = "1024x1024",
    quality: str = "medium",
    background: str = "opaque",
    output_format: str = "png",
    pause_seconds: float = 0.0,
) -> Streamed:
    """A streamed answer: `partial_images` partial images, then the completed image."""
    prefix = "image_edit" if edit else "image_generation"
    width, height = _parse_size(size)
    settings = {
        "background": background,
        "output_format": output_format,
        "quality": quality,
        "size": f"{width}x{height}",
    }
    chunks = [
        sse_event(
            {
                "type": f"{prefix}.partial_image",
                "b64_json": base64.b64encode(image_bytes((width, height), output_format, PARTIAL_COLOUR)).decode(),
                "created_at": int(time.time()),
                "partial_image_index": position,
                **settings,
            }
        )
        for position in range(partial_images)
    ]
    usage = images_response()["usage"]
    extra_tokens = PARTIAL_IMAGE_TOKENS * partial_images
    usage = {
        **usage,
        "output_tokens": usage["output_tokens"] + extra_tokens,
        "total_tokens": usage["total_tokens"] + extra_tokens,
    }
    chunks.append(
        sse_event(
            {
                "type": f"{prefix}.completed",
                "b64_json": base64.b64encode(image_bytes((width, height), output_format)).decode(),
                "created_at": int(time.time()),
                "usage": usage,
                **settings,
            }
        )
    )
    return Streamed(chunks, pause_seconds=pause_seconds)


def stream_breaks_off(pause_seconds: float = 0.0) -> Scripted:
    """A stream that sends a partial image and ends without the image (a dropped answer)."""
    return Scripted(Answer(200, Streamed(image_stream(partial_images=1).chunks[:1], pause_seconds=pause_seconds)))


def stream_error(*, type: str, code: str | None, message: str) -> Scripted:  # noqa: A002
    """A stream that sends a partial image, then an error event in OpenAI's error shape."""
    error = sse_event({"type": "error", "error": {"type": type, "code": code, "message": message, "param": None}})
    return Scripted(Answer(200, Streamed([image_stream(partial_images=1).chunks[0], error])))


def error_body(message: str, *, type: str, code: str | None, param: str | None = None) -> dict[str, Any]:  # noqa: A002
    return {"error": {"message": message, "type": type, "param": param, "code": code}}


def rate_limited(retry_after: str = "1") -> Scripted:
    """A 429 as OpenAI sends it when a per-minute image limit is reached."""
    return Scripted(
        Answer(
            429,
            error_body(
                "Rate limit reached for images per min (IPM): Limit 5, Used 5, Requested 1. "
                f"Please try again in {retry_after}s.",
                type="requests",
                code="rate_limit_exceeded",
            ),
            headers={"Retry-After": retry_after},
        )
    )


def moderation_blocked() -> Scripted:
    """The 400 the Images API answers when its safety system refuses a prompt or an input image."""
    return Scripted(
        Answer(
            400,
            error_body(
                "Your request was rejected as a result of our safety system. Your request may contain "
                "content that is not allowed by our safety system.",
                type="image_generation_user_error",
                code="moderation_blocked",
            ),
        )
    )


def hang(seconds: float) -> Scripted:
    """A call that answers only after `seconds` (the client has given up by then)."""
    return Scripted(Answer(200, images_response()), hang_seconds=seconds)


class FakeOpenAI(FakeServer):
    """Answers generations and edits with a real image of the size and format the request asked for."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        super().__init__(host, port)
        self._arrivals: list[tuple[str, float]] = []  # (path, time.monotonic()) of every request
        self.partial_pause_seconds = 0.0  # between the events of a streamed answer

    def _answer(self, request: Recorded) -> Answer:
        with self._lock:
            self._arrivals.append((request.path, time.monotonic()))
        return super()._answer(request)

    def default_answer(self, request: Recorded) -> Answer:
        if request.method != "POST" or request.path not in (GENERATIONS, EDITS):
            return Answer(
                404,
                error_body(f"Invalid URL ({request.method} {request.path})", type="invalid_request_error", code=None),
            )
        fields: dict[str, Any] = request.json() if request.path == GENERATIONS else parse_edit(request).fields
        size = fields.get("size") or "auto"
        if fields.get("stream") in (True, "true"):  # JSON for a generation, a form field for an edit
            return Answer(
                200,
                image_stream(
                    edit=request.path == EDITS,
                    partial_images=int(fields.get("partial_images") or 0),
                    size=size,
                    quality=fields.get("quality") or "medium",
                    background=fields.get("background") or "opaque",
                    output_format=fields.get("output_format") or "png",
                    pause_seconds=self.partial_pause_seconds,
                ),
            )
        return Answer(
            200,
            images_response(
                size=size,
                quality=fields.get("quality") or "medium",
                background=fields.get("background") or "opaque",
                output_format=fields.get("output_format") or "png",
            ),
        )

    def generations(self) -> list[dict[str, Any]]:
        """The JSON bodies of the generation requests received so far."""
        return [request.json() for request in self.received(GENERATIONS)]

    def edits(self) -> list[EditForm]:
        """The edit requests received so far, parsed."""
        return [parse_edit(request) for request in self.received(EDITS)]

    def arrivals(self, path_suffix: str) -> list[float]:
        """When (time.monotonic() of this process) each request to `path_suffix` arrived."""
        with self._lock:
            return [at for path, at in self._arrivals if path.endswith(path_suffix)]

    def forget(self) -> None:
        """Drop what was received and any answer still scripted (between tests sharing one fake)."""
        with self._lock:
            self.requests.clear()
            self._arrivals.clear()
            self._script.clear()
            self.partial_pause_seconds = 0.0


def _parse_size(size: str) -> tuple[int, int]:
    if size == "auto":
        return _STANDARD_SIZE
    width, _, height = size.partition("x")
    return int(width), int(height)
