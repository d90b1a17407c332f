"""Google's image and video models through the official `google-genai` SDK.

Two providers share the SDK plumbing of this module:

* `gemini` (GeminiProvider, below): Gemini image models on the Gemini Developer API, enabled by
  GEMINI_API_KEY: `models.generate_content` asking for an image, with the source and reference
  images sent as inline parts;
* `vertex` (VertexProvider, generation/providers/google_vertex.py): Imagen images and Veo clips,
  which the SDK only serves in Vertex mode.

What they share:

1. One SDK client per provider, built on first use and shared by the worker's threads: it sends
   through one thread-safe httpx connection pool, and per-call options are copied per request,
   never written to the client.
2. The SDK's own retries are off (one attempt): the pipeline retries what is safe, with its
   backoff and the provider's Retry-After, and only it knows whether the job is still wanted.
   Each call carries its own timeout (`HttpOptions.timeout`, in milliseconds).
3. The SDK reads its base-URL variables itself when the client is built: GOOGLE_GEMINI_BASE_URL
   for the Developer API, GOOGLE_VERTEX_BASE_URL for Vertex AI.
4. Errors are sorted into generation/providers/errors.py's taxonomy, with what only Google says:
   a 429 carrying a RetryInfo delay is a rate limit even when worded "quota exceeded" (a per-day
   quota is not), and refusals worded after Google's "Responsible AI" practices are content policy.
"""

from __future__ import annotations

import io
import logging
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from importlib import import_module
from typing import TYPE_CHECKING, Any

from django.conf import settings
from google import genai
from google.auth import exceptions as auth_errors
from google.genai import errors as genai_errors
from google.genai import types
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

if TYPE_CHECKING:
    from generation.providers.google_vertex import VertexProvider

logger = logging.getLogger(__name__)

GEMINI = "Google Gemini"

# Gemini models that take an output size; on the others `image_size` is an error.
_MODELS_WITH_IMAGE_SIZE = frozenset({"gemini-3-pro-image-preview"})
_FORMAT_MIMES = {"PNG": "image/png", "JPEG": "image/jpeg", "WEBP": "image/webp"}

_RETRY_INFO = "type.googleapis.com/google.rpc.RetryInfo"
_QUOTA_FAILURE = "type.googleapis.com/google.rpc.QuotaFailure"
# How Google words a refusal on content grounds, beyond the markers errors.py knows.
_POLICY_WORDS = ("responsible ai", "usage guidelines", "sensitive words")


def __getattr__(name: str) -> type[VertexProvider]:
    """The registry names `generation.providers.google:VertexProvider`; it lives in its own module,
    which imports this one, so it is looked up here on first use rather than imported at the top."""
    if name == "VertexProvider":
        return import_module("generation.providers.google_vertex").VertexProvider  # type: ignore[no-any-return]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


# -- the SDK plumbing both providers share ----------------------------------------------------


def _transport_error_classes() -> tuple[tuple[type[Exception], ...], tuple[type[Exception], ...]]:
    """The SDK sends through httpx2 or httpx, whichever is installed: the timeouts and the other
    transport errors (refused, reset, dropped connections) of both."""
    timeouts: list[type[Exception]] = []
    transport: list[type[Exception]] = []
    for module_name in ("httpx2", "httpx"):
        try:
            module = import_module(module_name)
        except ImportError:
            continue
        timeouts.append(module.TimeoutException)
        transport.append(module.TransportError)
    return tuple(timeouts), tuple(transport)


_TIMEOUTS, _TRANSPORT_ERRORS = _transport_error_classes()


class SharedClient:
    """An SDK client built on first use (so a process that never calls Google builds none) and
    then shared by every thread."""

    def __init__(self, build: Callable[[], genai.Client]) -> None:
        self._build = build
        self._client: genai.Client | None = None
        self._lock = threading.Lock()

    def get(self) -> genai.Client:
        with self._lock:
            if self._client is None:
                self._client = self._build()
            return self._client


def client_options() -> types.HttpOptions:
    """Options of a client: one attempt per call (the SDK's default, made explicit)."""
    return types.HttpOptions(retry_options=types.HttpRetryOptions(attempts=1))


def call_options(request: OutputRequest) -> types.HttpOptions:
    """Options of one call: its own timeout, in milliseconds."""
    return types.HttpOptions(timeout=max(1000, int(request.timeout_seconds * 1000)))


def not_configured(label: str, variables: str) -> PermanentProviderError:
    return PermanentProviderError(
        f"{label} is not configured on this server; an operator must set {variables}.", code=errors.PROVIDER_AUTH
    )


@contextmanager
def sdk_errors(label: str, request: OutputRequest) -> Iterator[None]:
    """Turn what the SDK raises inside the block into the provider errors of errors.py."""
    try:
        yield
    except genai_errors.APIError as error:
        logger.warning("%s answered HTTP %s %s for job %s: %s", label, error.code, error.status, request.job_id, error)
        headers = getattr(error.response, "headers", None)
        raise google_error(
            label,
            status=error.code,
            status_name=error.status or "",
            message=error.message or "",
            details=error_details(error.details),
            retry_after=errors.retry_after_seconds(headers) if headers is not None else None,
        ) from None
    except (auth_errors.DefaultCredentialsError, auth_errors.RefreshError) as error:
        # Vertex with a project uses application default credentials: none, or refused.
        logger.warning("%s credentials failed for job %s: %r", label, request.job_id, error)
        raise PermanentProviderError(
            f"{label} could not authenticate with the application default credentials; an operator must "
            "check them (or set an express-mode API key).",
            code=errors.PROVIDER_AUTH,
        ) from None
    except auth_errors.TransportError as error:
        logger.warning("%s credentials could not be fetched for job %s: %r", label, request.job_id, error)
        raise errors.connection_failed(label) from None
    except _TIMEOUTS as error:
        logger.warning("%s timed out for job %s: %r", label, request.job_id, error)
        raise errors.timed_out(label, request.timeout_seconds) from None
    except _TRANSPORT_ERRORS as error:
        logger.warning("%s connection failed for job %s: %r", label, request.job_id, error)
        raise errors.connection_failed(label) from None


def error_details(body: Any) -> list[dict]:
    """The `details` of Google's error body (`{"error": {"code", "message", "status", "details"}}`)."""
    if not isinstance(body, Mapping):
        return []
    inner = body.get("error", body)
    details = inner.get("details") if isinstance(inner, Mapping) else None
    return [item for item in details if isinstance(item, dict)] if isinstance(details, list) else []


def google_error(
    label: str,
    *,
    status: int,
    status_name: str = "",
    message: str = "",
    details: Sequence[dict] = (),
    retry_after: float | None = None,
) -> ProviderError:
    """The Atelier error for a Google error answer (an HTTP error, or a failed operation's error)."""
    if status < 500 and any(word in message.lower() for word in _POLICY_WORDS):
        return errors.content_policy(label)
    if status == 429:
        delay = _retry_delay(details)
        if retry_after is None:
            retry_after = delay
        if delay is not None and not _per_day_quota(details):
            # Google words its per-minute limits "quota exceeded" too; a RetryInfo says waiting cures it.
            message = ""
    return errors.from_http(provider=label, status=status, code=status_name, message=message, retry_after=retry_after)


def _retry_delay(details: Sequence[dict]) -> float | None:
    for detail in details:
        if detail.get("@type") == _RETRY_INFO and isinstance(detail.get("retryDelay"), str):
            return errors.retry_after_seconds({"Retry-After": detail["retryDelay"].removesuffix("s")})
    return None


def _per_day_quota(details: Sequence[dict]) -> bool:
    return any(
        "PerDay" in str(violation.get("quotaId", ""))
        for detail in details
        if detail.get("@type") == _QUOTA_FAILURE
        for violation in detail.get("violations") or []
        if isinstance(violation, dict)
    )


def unusable_answer(label: str) -> TransientProviderError:
    return TransientProviderError(
        f"{label} answered without a usable result; it will be tried again.", code=errors.PROVIDER_UNAVAILABLE
    )


def image_output(content: bytes, *, label: str, request: OutputRequest, report: dict) -> ProviderOutput:
    """An image the provider sent, with its real size and type (read from its header only)."""
    try:
        with Image.open(io.BytesIO(content)) as opened:
            width, height, image_format = opened.width, opened.height, opened.format
    except (UnidentifiedImageError, OSError, ValueError) as error:
        logger.warning("%s's image for job %s could not be read: %r", label, request.job_id, error)
        raise unusable_answer(label) from None
    mime = _FORMAT_MIMES.get(image_format or "", "image/png")
    return ProviderOutput(content=content, mime=mime, width=width, height=height, report=report)


def sniff_mime(content: bytes) -> str:
    """The type of an input image: prepared inputs are PNG, small uploads are passed on as they came."""
    if content.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if content[:4] == b"RIFF" and content[8:12] == b"WEBP":
        return "image/webp"
    return "image/png"


def no_long_running(label: str) -> PermanentProviderError:
    return PermanentProviderError(f"{label} makes no long-running outputs here.", code="UNSUPPORTED_KIND")


# -- Gemini ----------------------------------------------------------------------------------


def _gemini_client() -> genai.Client:
    if not settings.GEMINI_API_KEY:
        raise not_configured(GEMINI, "GEMINI_API_KEY")
    # vertexai=False: GOOGLE_GENAI_USE_VERTEXAI in the environment must not turn this into Vertex.
    return genai.Client(vertexai=False, api_key=settings.GEMINI_API_KEY, http_options=client_options())


class GeminiProvider:
    """Gemini image models (generations and edits) on the Developer API; see the module docstring.

    quality "high" asks the models that take a size (`_MODELS_WITH_IMAGE_SIZE`) for 2K images;
    the others make their one size. The aspect ratio goes in the image config.
    """

    name = "gemini"
    long_running_kinds: frozenset[str] = frozenset()
    # Gemini reads images at about 1 MP, and a request's inline data is capped (20 MB): a source
    # and four references at 1536 px stay well within it while keeping an edit's detail.
    input_max_side = 1536
    # The answer's JSON, its base64 text and the decoded image: a few MB each for a 2K PNG.
    working_memory_mb = 64

    def __init__(self) -> None:
        self._client = SharedClient(_gemini_client)

    def generate(self, request: OutputRequest) -> ProviderOutput:
        if request.kind not in ("image", "edit"):
            raise PermanentProviderError(
                f"{GEMINI} cannot make {request.kind} outputs here; it makes images and edits.",
                code="UNSUPPORTED_KIND",
            )
        if request.kind == "edit" and not request.source_image:
            raise PermanentProviderError(
                "An edit needs a source image; please upload the picture to edit.", code="SOURCE_IMAGE_REQUIRED"
            )
        client = self._client.get()
        with sdk_errors(GEMINI, request):
            response = client.models.generate_content(
                model=request.model, contents=_gemini_contents(request), config=_gemini_config(request)
            )
        return _gemini_output(response, request)

    def start(self, request: OutputRequest) -> str:
        raise no_long_running(GEMINI)

    def poll(self, request: OutputRequest, operation: str) -> OperationStatus:
        raise no_long_running(GEMINI)


def _gemini_contents(request: OutputRequest) -> types.Content:
    """The prompt, then each image after a line saying what it is (the model reads them in order)."""
    parts = [types.Part.from_text(text=request.prompt)]
    if request.source_image:
        parts += [
            types.Part.from_text(text="The image to edit:"),
            types.Part.from_bytes(data=request.source_image, mime_type=sniff_mime(request.source_image)),
        ]
    for number, reference in enumerate(request.references, start=1):
        parts += [
            types.Part.from_text(text=f"Reference image {number}:"),
            types.Part.from_bytes(data=reference.content, mime_type=sniff_mime(reference.content)),
        ]
    return types.Content(role="user", parts=parts)


def _gemini_config(request: OutputRequest) -> types.GenerateContentConfig:
    high = request.params.get("quality") == "high"
    return types.GenerateContentConfig(
        response_modalities=["IMAGE"],
        image_config=types.ImageConfig(
            aspect_ratio=request.params.get("aspect_ratio") or None,
            image_size="2K" if high and request.model in _MODELS_WITH_IMAGE_SIZE else None,
        ),
        # One HTTP request per call, so one bill per image: no function calling, no continuation.
        automatic_function_calling=types.AutomaticFunctionCallingConfig(disable=True),
        automatic_continuation=False,
        http_options=call_options(request),
    )


def _gemini_output(response: types.GenerateContentResponse, request: OutputRequest) -> ProviderOutput:
    """The image of an answer; an answer without one was refused (a blocked prompt, a safety stop,
    NO_IMAGE...): CONTENT_POLICY, never retried and never charged."""
    candidate = response.candidates[0] if response.candidates else None
    parts = (candidate.content.parts if candidate and candidate.content else None) or []
    # A thinking model shows its drafts as `thought` parts; the last image that is not one is the answer.
    images = [part.inline_data for part in parts if part.inline_data and part.inline_data.data and not part.thought]
    if not images:
        block = response.prompt_feedback.block_reason if response.prompt_feedback else None
        finish = candidate.finish_reason if candidate else None
        said = " ".join(part.text for part in parts if part.text)
        logger.warning(
            "%s made no image for job %s (block reason %s, finish reason %s): %s",
            GEMINI,
            request.job_id,
            block,
            finish,
            said[:300],
        )
        raise errors.content_policy(GEMINI, "The prompt" if block else "The request")
    content = images[-1].data
    assert content is not None  # filtered above
    return image_output(content, label=GEMINI, request=request, report=_gemini_report(response, request))


def _gemini_report(response: types.GenerateContentResponse, request: OutputRequest) -> dict:
    report: dict[str, Any] = {"model_version": response.model_version or request.model}
    if response.response_id:
        report["response_id"] = response.response_id
    usage = response.usage_metadata
    if usage is not None:
        counts = {
            "prompt_token_count": usage.prompt_token_count,
            "candidates_token_count": usage.candidates_token_count,
            "thoughts_token_count": usage.thoughts_token_count,
            "total_token_count": usage.total_token_count,
        }
        report["usage"] = {name: count for name, count in counts.items() if count is not None}
    return report
