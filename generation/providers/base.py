"""The one interface every image provider implements.

A provider turns one request (a job's prompt and parameters plus the index of the output) into
one image. It never touches the database or storage: the pipeline stores what it returns. It
signals failure only through the two exceptions below, so the pipeline can tell "try again
later" from "this will never work".
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol


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
    timeout_seconds: float = 120.0


@dataclass(frozen=True)
class ProviderOutput:
    content: bytes
    mime: str
    width: int
    height: int


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


class PermanentProviderError(ProviderError):
    """Retrying cannot help: bad request, content policy, authentication, unsupported input."""

    code = "PROVIDER_REJECTED"


class Provider(Protocol):
    name: str
    models: tuple[str, ...]  # the first one is the default
    kinds: frozenset[str]
    # The longest side, in pixels, an input image needs: a run downsizes larger sources and
    # references to it once, before the provider sees them (generation/services/inputs.py).
    input_max_side: int
    # Memory one output takes while it is made, beyond the prepared inputs; it counts towards a
    # job's memory ceiling.
    working_memory_mb: int

    def generate(self, request: OutputRequest) -> ProviderOutput: ...
