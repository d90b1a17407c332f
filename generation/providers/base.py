"""The one interface every provider implements.

A provider turns one request (a job's prompt and parameters plus the index of the output) into
one image or clip. It never touches the database or storage: the pipeline stores what it
returns. It signals failure only through the two exceptions below (generation/providers/errors.py
sorts the SDKs' errors into them), so the pipeline can tell "try again later" from "this will
never work".

A provider whose outputs take minutes (Veo) makes them as long-running operations instead: the
pipeline calls `start` once, records the operation's name on the job *before* it waits, and
then `poll`s it, so a worker that dies mid-wait leaves a name the next run resumes instead of
paying for a second operation.

A provider that can show an image forming (OpenAI's streamed partial images, the local provider
halfway through its latency) hands each partial image to the request's `on_preview` while it
works, when the caller asked for previews. A preview is only something to look at: it is never
returned, billed or kept with the outputs.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

# Takes a partial image of the output being made: its bytes and MIME type. It returns at once and
# never raises (generation/services/previews.py hands the write to a thread of its own), so a
# provider may call it from the middle of its work, as often as it has something new.
PreviewCallback = Callable[[bytes, str], None]


@dataclass(frozen=True)
class ReferenceImage:
    """An uploaded image that steers the result; `weight` is in [0, 1]."""

    content: bytes
    weight: float


@dataclass(frozen=True)
class OutputRequest:
    """Everything a provider needs to make output number `index` (0-based) of a job."""

    job_id: str
    kind: str  # "image" | "edit" | "video"
    model: str
    prompt: str  # the optimized prompt
    index: int
    seed: int
    params: dict = field(default_factory=dict)  # style, quality, aspect_ratio, guidance_scale, ...
    source_image: bytes | None = None  # required for kind "edit"
    references: tuple[ReferenceImage, ...] = ()
    # An edit's mask: a PNG whose fully transparent pixels mark where the source may change.
    mask: bytes | None = None
    timeout_seconds: float = 120.0
    # Where partial images go while the output is made; None: the caller wants no previews, and a
    # provider then makes the output exactly as it would without the feature.
    on_preview: PreviewCallback | None = field(default=None, compare=False, repr=False)


@dataclass(frozen=True)
class ProviderOutput:
    content: bytes
    mime: str  # image/png, image/jpeg, image/webp or video/mp4
    width: int
    height: int
    # What the provider said about this output, kept with it so an operator can reconcile the
    # credits charged with the provider's bill: "model_version", "revised_prompt", "usage"
    # (token counts as the provider names them), "cost" and "operation" where reported.
    report: dict = field(default_factory=dict)
    # For a clip: its first frame as a PNG, shown before it plays (None: the pipeline extracts it).
    poster: bytes | None = None


@dataclass(frozen=True)
class OperationStatus:
    """A long-running operation as last polled: `output` once done, else `progress` (0-100) if
    the provider reports one."""

    done: bool
    output: ProviderOutput | None = None
    progress: int | None = None


class ProviderError(Exception):
    """Base of the provider errors; `code` is stable and machine-readable."""

    code = "PROVIDER_ERROR"

    def __init__(self, message: str, *, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        if code:
            self.code = code


class TransientProviderError(ProviderError):
    """Worth retrying: rate limits, 5xx, timeouts, dropped connections.

    `retry_after` carries the provider's Retry-After in seconds when it sent one.
    """

    code = "PROVIDER_UNAVAILABLE"

    def __init__(self, message: str, *, code: str | None = None, retry_after: float | None = None) -> None:
        super().__init__(message, code=code)
        self.retry_after = retry_after


class OperationLost(TransientProviderError):
    """A long-running operation ended without a result, or the provider no longer knows it: a new
    operation may succeed (nothing was delivered, so nothing is charged)."""


class PermanentProviderError(ProviderError):
    """Retrying cannot help: bad request, content policy, authentication, unsupported input."""

    code = "PROVIDER_REJECTED"


class Provider(Protocol):
    name: str  # its models, kinds and options are in generation/providers/catalog.py
    # The longest side, in pixels, an input image needs: a run downsizes larger sources and
    # references to it once, before the provider sees them (generation/services/inputs.py).
    input_max_side: int
    # Memory one output takes while it is made, beyond the prepared inputs; it counts towards a
    # job's memory ceiling.
    working_memory_mb: int

    # Kinds made as long-running operations (`start` and `poll`) rather than by `generate`.
    long_running_kinds: frozenset[str]

    def generate(self, request: OutputRequest) -> ProviderOutput: ...

    def start(self, request: OutputRequest) -> str:
        """Start a long-running operation for one output; returns its name (only for
        `long_running_kinds`)."""
        ...

    def poll(self, request: OutputRequest, operation: str) -> OperationStatus:
        """Ask once how operation `operation` is doing; raises the provider errors when it failed."""
        ...
