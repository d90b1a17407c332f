"""OpenAI's GPT image models through the official `openai` SDK: `images.generate` and `images.edit`.

One call makes one image (`n=1`), so a job's progress and its credits move image by image. The
SDK's own retries are off (`max_retries=0`): the pipeline retries what is safe to retry, with its
backoff and the provider's Retry-After, and only it knows whether the job is still wanted. The
API key comes from the OPENAI_API_KEY setting; the SDK reads OPENAI_BASE_URL itself.

Atelier's parameters map onto the Images API as follows (the catalog has already refused what a
model cannot do, naming the field):

* quality draft / standard / high -> `low` / `medium` / `high`;
* aspect_ratio -> `size`: the standard sizes 1024x1024, 1536x1024 and 1024x1536 for 1:1, 3:2
  and 2:3 (every GPT image model makes them); the other ratios only for models that take any
  WIDTHxHEIGHT (see `_SIZES`);
* background and output_format are sent only when the job sets them; the API's default format
  is PNG.

When the caller wants previews (`OutputRequest.on_preview`) and OPENAI_PARTIAL_IMAGES is above 0,
the image is asked for as a stream (`stream=True`, `partial_images`): the API sends server-sent
events, up to that many `image_generation.partial_image` (`image_edit.partial_image` for an edit)
with a base64 partial image each, handed to `on_preview` as they come, then one
`image_generation.completed` (`image_edit.completed`) carrying the image, its settings and its
usage. OpenAI bills each partial image as 100 extra image output tokens; the usage reported with
the image says so. Without previews the call is the plain JSON one.
"""

from __future__ import annotations

import base64
import binascii
import io
import logging
import threading
from typing import Any, Literal, TypeAlias

import openai
from django.conf import settings
from openai import Stream, omit
from openai.types import (
    ImageEditCompletedEvent,
    ImageEditPartialImageEvent,
    ImageEditStreamEvent,
    ImageGenCompletedEvent,
    ImageGenPartialImageEvent,
    ImageGenStreamEvent,
    ImagesResponse,
)
from PIL import Image, UnidentifiedImageError

from generation.providers import errors
from generation.providers.base import (
    OperationStatus,
    OutputRequest,
    PermanentProviderError,
    ProviderError,
    ProviderOutput,
    TransientProviderError,
)
from generation.providers.catalog import ASPECT_RATIOS

logger = logging.getLogger(__name__)

LABEL = "OpenAI"

OpenAIQuality = Literal["low", "medium", "high"]
_QUALITIES: dict[str, OpenAIQuality] = {"draft": "low", "standard": "medium", "high": "high"}
# Sizes by aspect ratio, exact ratios with both sides multiples of 16 (the API's rule for free
# sizes): the standard sizes where a ratio has one, the SDK's own example for 16:9, and 4:3 at
# the exact size between them in area (1.0 to 1.6 MP), so no ratio costs far more than another.
_SIZES: dict[str, tuple[int, int]] = {
    "1:1": (1024, 1024),
    "3:2": (1536, 1024),
    "2:3": (1024, 1536),
    "16:9": (1536, 864),
    "9:16": (864, 1536),
    "4:3": (1280, 960),
    "3:4": (960, 1280),
}
assert set(_SIZES) >= set(ASPECT_RATIOS), "every aspect ratio Atelier offers needs an OpenAI size"

_FORMAT_MIMES = {"PNG": "image/png", "JPEG": "image/jpeg", "WEBP": "image/webp"}
_OUTPUT_FORMAT_MIMES = {"png": "image/png", "jpeg": "image/jpeg", "webp": "image/webp"}

# The events of a streamed generation and of a streamed edit; the SDK makes each its own type.
_PARTIAL_EVENTS = (ImageGenPartialImageEvent, ImageEditPartialImageEvent)
_COMPLETED_EVENTS = (ImageGenCompletedEvent, ImageEditCompletedEvent)
ImageAnswer: TypeAlias = ImagesResponse | Stream[ImageGenStreamEvent] | Stream[ImageEditStreamEvent]
CompletedEvent: TypeAlias = ImageGenCompletedEvent | ImageEditCompletedEvent


def openai_size(aspect_ratio: str) -> str:
    """The `size` the Images API is asked for; the catalog keeps each model to the ratios it makes."""
    width, height = _SIZES.get(aspect_ratio, _SIZES["1:1"])
    return f"{width}x{height}"


class OpenAIProvider:
    """GPT image models (generations and edits with an optional mask); see the module docstring."""

    name = "openai"
    long_running_kinds: frozenset[str] = frozenset()
    # JOB_MEMORY_CEILING_MB is sized so the largest accepted upload fits a job whose inputs are
    # prepared at 1024 px a side with at most 48 MB of working memory; larger inputs would refuse
    # the largest uploads for OpenAI jobs. An edit's output is at most 1536 px a side here.
    input_max_side = 1024
    # The answer's JSON, its base64 text and the decoded file are a few MB each for a 1.6 MP
    # image (Pillow reads only its header); an edit's multipart body streams the prepared inputs.
    # Streamed, each partial image passes the same way before the image, and the latest waits
    # to be written as the preview while the one before is written (a few MB each).
    working_memory_mb = 40

    def __init__(self) -> None:
        self._client: openai.OpenAI | None = None
        self._client_lock = threading.Lock()

    # -- the Provider interface --------------------------------------------------------------

    def generate(self, request: OutputRequest) -> ProviderOutput:
        if request.kind not in ("image", "edit"):
            raise PermanentProviderError(
                f"OpenAI cannot make {request.kind} outputs here; it makes images and edits.",
                code="UNSUPPORTED_KIND",
            )
        # Partial images cost tokens: asked for only when someone will see them.
        partial_images = settings.OPENAI_PARTIAL_IMAGES if request.on_preview is not None else 0
        try:
            answer = self._call(request, partial_images=partial_images)
            if isinstance(answer, ImagesResponse):
                return _output(answer, request)
            with answer:  # closed however the reading ends: the connection is not left open
                return _streamed_output(answer, request)
        except openai.APIStatusError as error:
            logger.warning("OpenAI answered HTTP %s for job %s: %s", error.status_code, request.job_id, error)
            raise _status_error(error) from None
        except openai.APITimeoutError as error:
            logger.warning("OpenAI timed out for job %s: %r", request.job_id, error)
            raise errors.timed_out(LABEL, request.timeout_seconds) from None
        except openai.APIConnectionError as error:
            logger.warning("OpenAI connection failed for job %s: %r", request.job_id, error.__cause__ or error)
            raise errors.connection_failed(LABEL) from None
        except openai.APIResponseValidationError as error:
            logger.warning("OpenAI answered an unexpected body for job %s: %s", request.job_id, error)
            raise _unusable_answer() from None
        except openai.APIError as error:  # an error event in the middle of a stream
            logger.warning("OpenAI's stream for job %s ended with an error: %s", request.job_id, error)
            raise _stream_error(error) from None

    def start(self, request: OutputRequest) -> str:
        raise PermanentProviderError("OpenAI makes no long-running outputs here.", code="UNSUPPORTED_KIND")

    def poll(self, request: OutputRequest, operation: str) -> OperationStatus:
        raise PermanentProviderError("OpenAI makes no long-running outputs here.", code="UNSUPPORTED_KIND")

    # -- calling the API ---------------------------------------------------------------------

    def client(self) -> openai.OpenAI:
        """One client per provider (its connection pool is shared by the worker's threads); the
        timeout is given per call, since each call has its own share of the job's time."""
        with self._client_lock:
            if self._client is None:
                if not settings.OPENAI_API_KEY:
                    raise PermanentProviderError(
                        "OpenAI is not configured on this server; an operator must set OPENAI_API_KEY.",
                        code=errors.PROVIDER_AUTH,
                    )
                self._client = openai.OpenAI(api_key=settings.OPENAI_API_KEY, max_retries=0)
            return self._client

    def _call(self, request: OutputRequest, *, partial_images: int) -> ImageAnswer:
        """The plain JSON answer, or with `partial_images` above 0 the stream of events."""
        params = request.params
        size = openai_size(params.get("aspect_ratio") or "1:1")
        quality = _QUALITIES.get(params.get("quality") or "standard", "medium")
        # Sent only when the job chose them: the API's own defaults (auto, png) otherwise.
        background = params.get("background") or omit
        output_format = params.get("output_format") or omit
        # The stream's two fields are sent only when partial images are wanted: the plain call
        # otherwise. (One dict for both calls: the SDK's overloads tell the two answers apart by
        # `stream`'s literal type, which a computed value cannot show.)
        common: dict[str, Any] = {
            "model": request.model,
            "prompt": request.prompt,
            "n": 1,
            "size": size,
            "quality": quality,
            "background": background,
            "output_format": output_format,
            "timeout": request.timeout_seconds,
        }
        if partial_images > 0:
            common |= {"stream": True, "partial_images": partial_images}
        images = self.client().images
        if request.kind == "image":
            return images.generate(**common)
        if not request.source_image:
            raise PermanentProviderError(
                "An edit needs a source image; please upload the picture to edit.", code="SOURCE_IMAGE_REQUIRED"
            )
        # The API applies a mask to the first image: the source goes first, the references after.
        files = [_named_file("source", request.source_image)] + [
            _named_file(f"reference-{position}", reference.content)
            for position, reference in enumerate(request.references, start=1)
        ]
        mask = _named_file("mask", request.mask) if request.mask is not None else omit
        return images.edit(image=files, mask=mask, **common)


def _named_file(stem: str, content: bytes) -> tuple[str, bytes, str]:
    """A multipart file part: the API tells PNG, JPEG and WebP inputs apart by their type."""
    mime = _sniff_mime(content)
    return (f"{stem}.{mime.split('/')[1]}", content, mime)


def _sniff_mime(content: bytes) -> str:
    if content.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if content[:4] == b"RIFF" and content[8:12] == b"WEBP":
        return "image/webp"
    return "image/png"  # what generation/services/inputs.py prepares inputs as


def _output(response: ImagesResponse, request: OutputRequest) -> ProviderOutput:
    """The image of a successful answer, and what OpenAI said about it (for reconciling its bill)."""
    image = response.data[0] if response.data else None
    if image is None or not image.b64_json:
        logger.warning("OpenAI answered without an image for job %s: %s", request.job_id, response)
        raise _unusable_answer()
    return _image_output(
        image.b64_json,
        output_format=response.output_format,
        report=_report(response, request, revised_prompt=image.revised_prompt),
        request=request,
    )


def _streamed_output(
    events: Stream[ImageGenStreamEvent] | Stream[ImageEditStreamEvent], request: OutputRequest
) -> ProviderOutput:
    """Read a streamed answer: each partial image goes to `on_preview` as it comes, and the
    completed event is the image. A stream that ends without one is an unusable answer."""
    for event in events:
        if isinstance(event, _PARTIAL_EVENTS):
            _show_partial(event.b64_json, event.output_format, request)
        elif isinstance(event, _COMPLETED_EVENTS):
            return _image_output(
                event.b64_json,
                output_format=event.output_format,
                report=_report(event, request),
                request=request,
            )
    logger.warning("OpenAI's stream for job %s ended without an image", request.job_id)
    raise _unusable_answer()


def _show_partial(b64_json: str, output_format: str, request: OutputRequest) -> None:
    """Hand a partial image to the preview; one that cannot be read is skipped, never fatal."""
    if request.on_preview is None:
        return
    try:
        content = base64.b64decode(b64_json, validate=True)
    except (binascii.Error, ValueError):
        logger.info("OpenAI sent job %s a partial image that is not base64; skipped", request.job_id)
        return
    request.on_preview(content, _OUTPUT_FORMAT_MIMES.get(output_format, "image/png"))


def _image_output(b64_json: str, *, output_format: str | None, report: dict, request: OutputRequest) -> ProviderOutput:
    try:
        content = base64.b64decode(b64_json, validate=True)
        with Image.open(io.BytesIO(content)) as opened:
            width, height, image_format = opened.width, opened.height, opened.format
    except (binascii.Error, ValueError, UnidentifiedImageError, OSError) as error:
        logger.warning("OpenAI's image for job %s could not be read: %r", request.job_id, error)
        raise _unusable_answer() from None
    requested_format = output_format or request.params.get("output_format") or "png"
    mime = _FORMAT_MIMES.get(image_format or "", _OUTPUT_FORMAT_MIMES.get(requested_format, "image/png"))
    return ProviderOutput(content=content, mime=mime, width=width, height=height, report=report)


def _report(answer: ImagesResponse | CompletedEvent, request: OutputRequest, revised_prompt: str | None = None) -> dict:
    """What OpenAI said about the image, from the JSON answer or the stream's completed event."""
    extra = answer.model_extra or {}
    report: dict[str, Any] = {"model_version": extra.get("model") or request.model}
    if revised_prompt:
        report["revised_prompt"] = revised_prompt
    if answer.usage is not None:
        report["usage"] = answer.usage.to_dict()
    # OpenAI bills image tokens by size and quality: what it says it made settles the bill.
    for name in ("size", "quality", "background", "output_format"):
        value = getattr(answer, name, None)
        if value:
            report[name] = value
    if "cost" in extra:
        report["cost"] = extra["cost"]
    return report


def _status_error(error: openai.APIStatusError) -> ProviderError:
    """The Atelier error for an HTTP error answer; the SDK has already unwrapped `{"error": {...}}`."""
    body = error.body if isinstance(error.body, dict) else {}
    message = body.get("message")
    return errors.from_http(
        provider=LABEL,
        status=error.status_code,
        # A moderation block is a 400 with code "moderation_blocked"; a used-up account says
        # "insufficient_quota" in its code or type.
        code=" ".join(str(part) for part in (error.code, error.type) if part),
        message=message if isinstance(message, str) else "",
        retry_after=errors.retry_after_seconds(error.response.headers),
    )


def _stream_error(error: openai.APIError) -> ProviderError:
    """The Atelier error for an error event in a stream (no HTTP status: the answer began as a
    200). Its type says whose fault it is: the request's (`invalid_request_error`, an
    `..._user_error` such as a moderation block) is sorted as a 400 would be, anything else as
    the provider's own trouble."""
    body = error.body if isinstance(error.body, dict) else {}
    message = body.get("message")
    kind = str(error.type or body.get("type") or "")
    status = 400 if kind == "invalid_request_error" or kind.endswith("user_error") else 502
    return errors.from_http(
        provider=LABEL,
        status=status,
        code=" ".join(str(part) for part in (error.code or body.get("code"), kind) if part),
        message=message if isinstance(message, str) else "",
    )


def _unusable_answer() -> TransientProviderError:
    return TransientProviderError(
        f"{LABEL} answered without a usable image; the image will be tried again.", code=errors.PROVIDER_UNAVAILABLE
    )
