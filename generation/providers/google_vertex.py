"""Imagen images and Veo clips on Vertex AI, through `google-genai` in Vertex mode (provider `vertex`).

The SDK serves `generate_images` and `generate_videos` only in Vertex mode, enabled by an
express-mode API key (VERTEX_API_KEY) or by GOOGLE_CLOUD_PROJECT and GOOGLE_CLOUD_LOCATION with
application default credentials; GOOGLE_VERTEX_BASE_URL moves the endpoint. One client, no SDK
retries, a timeout per call and the error sorting are shared with Gemini (google.py).

Imagen: one image per call (`number_of_images=1`), so progress and capture move image by image.
Output i of a job is made with the job's seed + i (one seed for a whole batch would make copies),
and Imagen takes a seed only with its watermark off (`add_watermark=False`). Quality "high" asks
the models that take a size for 2K. The SDK marks `generate_images` deprecated in favour of
`generate_content` with image models (removal not before 2027): Imagen stays while the SDK has it.

Veo: each clip is a long-running operation (see base.py). `start` sends `generate_videos` in its
current form (`source=`, not the deprecated `prompt=`) and returns the operation's name; `poll`
asks about it with `operations.get` (a `fetchPredictOperation` call in Vertex mode). No output
storage URI is asked for, so a finished operation carries the MP4 itself.
"""

from __future__ import annotations

import io
import logging
from typing import Any

import av
from django.conf import settings
from google import genai
from google.genai import errors as genai_errors
from google.genai import types

from generation.providers import errors
from generation.providers.base import (
    OperationLost,
    OperationStatus,
    OutputRequest,
    PermanentProviderError,
    ProviderError,
    ProviderOutput,
    TransientProviderError,
)
from generation.providers.google import (
    SharedClient,
    call_options,
    client_options,
    error_details,
    google_error,
    image_output,
    not_configured,
    sdk_errors,
    unusable_answer,
)

logger = logging.getLogger(__name__)

VERTEX = "Vertex AI"
VIDEO = "video"

# Imagen models that take `image_size` (2K); the others make their one size.
_IMAGEN_2K = frozenset({"imagen-4.0-generate-001", "imagen-4.0-ultra-generate-001"})
# What Veo makes by default (720p), by aspect ratio: the size of a clip PyAV cannot read.
_VEO_SIZES = {"16:9": (1280, 720), "9:16": (720, 1280)}
# google.rpc.Code of a failed operation -> the HTTP status Google maps it to.
_RPC_HTTP_STATUS = {
    1: 499, 2: 500, 3: 400, 4: 504, 5: 404, 6: 409, 7: 403, 8: 429,
    9: 400, 10: 409, 11: 400, 12: 501, 13: 500, 14: 503, 15: 500, 16: 401,
}  # fmt: skip


def _vertex_client() -> genai.Client:
    """Express mode when a key is set, else the project and location with default credentials."""
    if settings.VERTEX_API_KEY:
        return genai.Client(vertexai=True, api_key=settings.VERTEX_API_KEY, http_options=client_options())
    if settings.GOOGLE_CLOUD_PROJECT and settings.GOOGLE_CLOUD_LOCATION:
        return genai.Client(
            vertexai=True,
            project=settings.GOOGLE_CLOUD_PROJECT,
            location=settings.GOOGLE_CLOUD_LOCATION,
            http_options=client_options(),
        )
    raise not_configured(VERTEX, "VERTEX_API_KEY, or GOOGLE_CLOUD_PROJECT and GOOGLE_CLOUD_LOCATION")


def output_seed(request: OutputRequest) -> int:
    """The seed of one output: the job's, moved on by the output's index, within the APIs' range."""
    return (request.seed + request.index) % 2**31


class VertexProvider:
    """Imagen (images) and Veo (clips, as long-running operations); see the module docstring."""

    name = "vertex"
    long_running_kinds: frozenset[str] = frozenset({VIDEO})
    # Neither Imagen nor Veo takes input images here (the catalog allows no references).
    input_max_side = 1024
    # A finished Veo operation carries its clip as base64 in JSON: an 8 s 1080p clip is some
    # 10-20 MB, held as text, as bytes and once more by the SDK's models.
    working_memory_mb = 128

    def __init__(self) -> None:
        self._client = SharedClient(_vertex_client)

    # -- Imagen ------------------------------------------------------------------------------

    def generate(self, request: OutputRequest) -> ProviderOutput:
        if request.kind != "image":
            raise PermanentProviderError(
                f"{VERTEX} makes images with Imagen and clips with Veo here, not {request.kind} outputs.",
                code="UNSUPPORTED_KIND",
            )
        client = self._client.get()
        with sdk_errors(VERTEX, request):
            response = client.models.generate_images(
                model=request.model, prompt=request.prompt, config=_imagen_config(request)
            )
        generated = next((image for image in response.generated_images or [] if image.image), None)
        content = generated.image.image_bytes if generated and generated.image else None
        if not content:
            reasons = [
                image.rai_filtered_reason for image in response.generated_images or [] if image.rai_filtered_reason
            ]
            logger.warning("%s made no image for job %s: %s", VERTEX, request.job_id, reasons or "no reason given")
            raise errors.content_policy(VERTEX)
        report: dict[str, Any] = {"model_version": request.model}
        if generated and generated.enhanced_prompt:
            report["revised_prompt"] = generated.enhanced_prompt
        return image_output(content, label=VERTEX, request=request, report=report)

    # -- Veo ---------------------------------------------------------------------------------

    def start(self, request: OutputRequest) -> str:
        if request.kind != VIDEO:
            raise PermanentProviderError(f"{VERTEX} makes only clips as operations.", code="UNSUPPORTED_KIND")
        client = self._client.get()
        with sdk_errors(VERTEX, request):
            operation = client.models.generate_videos(
                model=request.model,
                source=types.GenerateVideosSource(prompt=request.prompt),
                config=_veo_config(request),
            )
        if not operation.name:
            logger.warning("%s started an operation without a name for job %s: %s", VERTEX, request.job_id, operation)
            raise unusable_answer(VERTEX)
        return operation.name

    def poll(self, request: OutputRequest, operation: str) -> OperationStatus:
        """1. Ask how the operation is doing; one the API no longer knows is lost (start another).
        2. Not done: its progress, when Veo reports one.
        3. Done with an error: transient trouble loses the operation, a refusal fails the job.
        4. Done: the clip, or CONTENT_POLICY when every clip was filtered out."""
        client = self._client.get()
        with sdk_errors(VERTEX, request):
            try:
                polled = client.operations.get(
                    types.GenerateVideosOperation.model_validate({"name": operation}),
                    config=types.GetOperationConfig(http_options=call_options(request)),
                )
            except genai_errors.ClientError as error:
                if error.code != 404:
                    raise
                logger.warning("%s no longer knows operation %s: %s", VERTEX, operation, error)
                raise OperationLost(f"{VERTEX} no longer knows the operation; a new one will be started.") from None
        if not polled.done:
            return OperationStatus(done=False, progress=_progress(polled.metadata))
        if polled.error:
            logger.warning("%s operation %s failed: %s", VERTEX, operation, polled.error)
            raise _operation_failed(polled.error)
        return OperationStatus(done=True, output=_clip(polled, request, operation))


def _imagen_config(request: OutputRequest) -> types.GenerateImagesConfig:
    params = request.params
    guidance = params.get("guidance_scale")
    return types.GenerateImagesConfig(
        number_of_images=1,
        aspect_ratio=params.get("aspect_ratio") or None,
        negative_prompt=params.get("negative_prompt") or None,
        guidance_scale=float(guidance) if guidance is not None else None,
        seed=output_seed(request),
        add_watermark=False,  # Imagen refuses a seed while its watermark is on
        include_rai_reason=True,  # a filtered image says why (logged; the job says CONTENT_POLICY)
        image_size="2K" if params.get("quality") == "high" and request.model in _IMAGEN_2K else None,
        http_options=call_options(request),
    )


def _veo_config(request: OutputRequest) -> types.GenerateVideosConfig:
    params = request.params
    duration = params.get("duration_seconds")
    return types.GenerateVideosConfig(
        number_of_videos=1,
        aspect_ratio=params.get("aspect_ratio") or None,
        duration_seconds=int(duration) if duration else None,
        seed=output_seed(request),
        negative_prompt=params.get("negative_prompt") or None,
        http_options=call_options(request),
    )


def _progress(metadata: dict[str, Any] | None) -> int | None:
    value = (metadata or {}).get("progressPercent")
    if isinstance(value, int | float) and 0 <= value <= 100:
        return int(value)
    return None


def _operation_failed(error: dict[str, Any]) -> ProviderError:
    """A failed operation's `google.rpc.Status`, sorted like an HTTP error; transient trouble means
    the operation is lost (nothing was delivered, nothing is charged) and another one may succeed."""
    code = error.get("code")
    mapped = google_error(
        VERTEX,
        status=_RPC_HTTP_STATUS.get(code, 500) if isinstance(code, int) else 500,
        message=str(error.get("message") or ""),
        details=error_details({"error": error}),
    )
    if isinstance(mapped, TransientProviderError):
        return OperationLost(mapped.message, code=mapped.code, retry_after=mapped.retry_after)
    return mapped


def _clip(polled: types.GenerateVideosOperation, request: OutputRequest, operation: str) -> ProviderOutput | None:
    """The clip of a finished operation; None when it finished without one (the pipeline then
    treats the operation as lost)."""
    result = polled.response or polled.result
    filtered = (result.rai_media_filtered_count if result else None) or 0
    videos = [generated.video for generated in (result.generated_videos if result else None) or [] if generated.video]
    if not videos:
        if filtered:
            reasons = result.rai_media_filtered_reasons if result else None
            logger.warning("%s filtered the clip of operation %s: %s", VERTEX, operation, reasons)
            raise errors.content_policy(VERTEX)
        logger.warning("%s finished operation %s without a clip", VERTEX, operation)
        return None
    video = videos[0]
    if not video.video_bytes:
        # Only asked-for storage (output_gcs_uri) answers with a URI, and Vertex mode has no
        # download in the SDK: a clip there cannot be fetched.
        logger.warning("%s answered operation %s with a URI only: %s", VERTEX, operation, video.uri)
        raise PermanentProviderError(
            f"{VERTEX} stored the clip at an output storage URI, which Atelier does not support; "
            "it cannot be delivered.",
            code=errors.INVALID_REQUEST,
        )
    width, height = _clip_size(video.video_bytes) or _VEO_SIZES.get(
        request.params.get("aspect_ratio") or "16:9", _VEO_SIZES["16:9"]
    )
    report: dict[str, Any] = {"model_version": request.model, "operation": operation}
    if filtered:
        report["rai_media_filtered_count"] = filtered
    return ProviderOutput(content=video.video_bytes, mime="video/mp4", width=width, height=height, report=report)


def _clip_size(content: bytes) -> tuple[int, int] | None:
    """The frame size of an MP4, read from its header; None when PyAV cannot read it (the clip is
    kept all the same: it is paid for)."""
    try:
        with av.open(io.BytesIO(content), mode="r") as container:
            stream = container.streams.video[0]
            return stream.codec_context.width, stream.codec_context.height
    except (av.FFmpegError, OSError, ValueError, IndexError):
        return None
