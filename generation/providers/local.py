"""An offline provider that draws abstract designs with Pillow and films them as short clips.

It needs no network or API key, so development, demos, tests and benchmarks can run the whole
pipeline. The pictures are deterministic: the same prompt, seed, output index, parameters,
source image and references always give byte-identical PNGs. The prompt steers the palette
(colour words such as "red" or "ocean" really do) and the motifs ("mountain", "city", "waves",
"stars", ...); the seed and index steer the layout; the style and aspect-ratio parameters steer
the look and the size. Its clips (kind "video", model atelier-motion-1) are those designs seen
through a slow camera move, encoded as H.264 MP4 (generation/providers/local_video.py).

Two knobs simulate a real remote provider, read on every call from the Django settings (when
configured) or else from the environment, unless given to the constructor:

* ``LOCAL_PROVIDER_LATENCY_MS`` (default 1500): how long each call sleeps;
* ``LOCAL_PROVIDER_TRANSIENT_FAILURE_RATE`` (default 0): the chance that a call fails with a
  ``TransientProviderError``. This roll is truly random, so a retry can succeed.

Like a provider that streams partial images, it shows an image forming when the caller asks for
previews (`OutputRequest.on_preview`): halfway through its latency it hands over a small, blurred
version of the image it will return (``LOCAL_PROVIDER_PREVIEWS``, default true; never for clips,
nor without latency, when the final image follows at once).

A prompt with the word "forbidden" is refused as a content-policy violation, so tests can
provoke a permanent failure deterministically. ``LOCAL_PROVIDER_REFUSE_FROM_IMAGE`` (default 0,
off) refuses every output from that image number (1-based) on, to fail a job part-way through.
These refusals, the latency, the failures and the drills below apply to every kind alike.
"""

from __future__ import annotations

import io
import os
import random
import re
import signal
import time
from collections.abc import Callable
from typing import Any

from PIL import Image, ImageFilter, ImageOps

from generation.providers.base import (
    OutputRequest,
    PermanentProviderError,
    ProviderOutput,
    TransientProviderError,
)
from generation.providers.catalog import PROVIDERS
from generation.providers.local_art import render, to_rgb
from generation.providers.local_video import clip_plan, render_clip

DEFAULT_LATENCY_MS = 1500
DEFAULT_FAILURE_RATE = 0.0
# A preview is looked at in a thumbnail's slot: a long side of this many pixels, blurred by this
# radius, looks like an image still forming and weighs a few kB, whatever the final image's size.
PREVIEW_LONG_SIDE = 256
PREVIEW_BLUR_RADIUS = 5

_FORBIDDEN = re.compile(r"\bforbidden\b", re.IGNORECASE)
_WORD_RE = re.compile(r"[a-z0-9-]+")


class LocalProvider:
    """Draws deterministic abstract designs offline; see the module docstring."""

    name = "local"
    # Which model makes which kind is the model registry's to say (generation/providers/catalog.py).
    models: tuple[str, ...] = tuple(model.id for model in PROVIDERS["local"].models)
    kinds: frozenset[str] = frozenset().union(*(model.kinds for model in PROVIDERS["local"].models))
    long_running_kinds: frozenset[str] = frozenset()
    # It never draws above 1024 px ("high" quality), so a larger input only costs memory.
    input_max_side = 1024
    # Measured: a 1024 px output from a 1024 px RGBA source and three references peaks about
    # 31 MB above the process's baseline; a clip about 37 MB whatever its length or shape (frames
    # stream through the encoder one at a time): 6 MB of art, the rest x264's encoder state, paid
    # again by every clip encoded at the same time. The rest is headroom.
    working_memory_mb = 48

    def __init__(self, *, latency_ms: int | None = None, failure_rate: float | None = None) -> None:
        self._latency_ms = latency_ms
        self._failure_rate = failure_rate

    # -- the Provider interface --------------------------------------------------------------

    def generate(self, request: OutputRequest) -> ProviderOutput:
        """Every kind goes through the same refusals, drills and simulated latency and failures;
        only the drawing differs (`_drawing`)."""
        spec = PROVIDERS[self.name].model(request.model)
        if spec is None or request.kind not in spec.kinds:
            raise PermanentProviderError(
                f"The local model {request.model!r} cannot make {request.kind!r} outputs; "
                f"the local provider makes: {', '.join(sorted(self.kinds))}.",
                code="UNSUPPORTED_KIND",
            )
        if _FORBIDDEN.search(request.prompt or ""):
            raise PermanentProviderError("The prompt was refused by the content policy.", code="CONTENT_POLICY")
        refuse_from = _int_setting("LOCAL_PROVIDER_REFUSE_FROM_IMAGE")
        if refuse_from > 0 and request.index + 1 >= refuse_from:
            noun = "Clip" if request.kind == "video" else "Image"
            raise PermanentProviderError(
                f"{noun} {request.index + 1} was refused by the content policy.", code="CONTENT_POLICY"
            )
        # Built before the wait, so a request that can never be drawn fails at once.
        draw = self._drawing(request)
        _drill_crash_or_hang(request)
        return self._act_remote(request, draw)

    def _drawing(self, request: OutputRequest) -> Callable[[], ProviderOutput]:
        """What makes the output of `request`, after checking its inputs."""
        if request.kind == "video":
            plan = clip_plan(request)
            return lambda: render_clip(request, plan)
        source = None
        if request.kind == "edit":
            if not request.source_image:
                raise PermanentProviderError(
                    "An edit needs a source image; please upload the picture to edit.",
                    code="SOURCE_IMAGE_REQUIRED",
                )
            source = _open_source(request.source_image, max_side=self.input_max_side)
        return lambda: _png_output(render(request, source))

    def _act_remote(self, request: OutputRequest, draw: Callable[[], ProviderOutput]) -> ProviderOutput:
        """Take as long as a remote provider, showing a preview halfway when one is wanted, and
        fail as often as configured; then the output."""
        latency_ms = self._latency_ms if self._latency_ms is not None else _latency_setting()
        # Like a real client, the call honours its timeout: it gives up rather than overrun it.
        if latency_ms / 1000 > request.timeout_seconds:
            time.sleep(request.timeout_seconds)
            raise TransientProviderError(
                f"The local provider did not answer within {request.timeout_seconds:.0f} s.",
                code="PROVIDER_TIMEOUT",
            )
        show = request.on_preview if latency_ms > 0 and request.kind != "video" and _previews_setting() else None
        output = None
        if show is None:
            time.sleep(latency_ms / 1000)
        else:
            time.sleep(latency_ms / 2000)
            output = draw()  # the same bytes as drawn at the end: the preview is of this very image
            show(_preview_jpeg(output), "image/jpeg")
            time.sleep(latency_ms / 2000)
        rate = self._failure_rate if self._failure_rate is not None else _failure_rate_setting()
        if rate > 0 and random.SystemRandom().random() < rate:
            raise TransientProviderError(
                "The local provider is simulating an outage.",
                code="PROVIDER_UNAVAILABLE",
                retry_after=None,
            )
        return output if output is not None else draw()


def _png_output(image: Image.Image) -> ProviderOutput:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", compress_level=1)
    return ProviderOutput(content=buffer.getvalue(), mime="image/png", width=image.width, height=image.height)


def _preview_jpeg(output: ProviderOutput) -> bytes:
    """An early look at `output`: downsized to PREVIEW_LONG_SIDE (its aspect ratio kept) and
    blurred, as an image still forming looks."""
    with Image.open(io.BytesIO(output.content)) as opened:
        opened.thumbnail((PREVIEW_LONG_SIDE, PREVIEW_LONG_SIDE), Image.Resampling.BILINEAR)
        blurred = to_rgb(opened).filter(ImageFilter.GaussianBlur(PREVIEW_BLUR_RADIUS))
    buffer = io.BytesIO()
    blurred.save(buffer, format="JPEG", quality=70)
    return buffer.getvalue()


# -- fault drills --------------------------------------------------------------------------------

# (job id, image index) of the calls that already hung once in this process.
_hung_once: set[tuple[str, int]] = set()


def _drill_crash_or_hang(request: OutputRequest) -> None:
    """Fault drills for the chaos suite, off unless configured (never in production):

    * ``LOCAL_PROVIDER_CRASH_WORD``: a prompt with this word kills the worker process at once,
      as a native crash or the out-of-memory killer would (a poison job);
    * ``LOCAL_PROVIDER_HANG_WORD`` with ``LOCAL_PROVIDER_HANG_SECONDS``: the first call for each
      image of such a prompt blocks that long, ignoring its timeout, like a wedged connection.
    """
    words = set(_WORD_RE.findall((request.prompt or "").lower()))
    crash_word = str(_setting("LOCAL_PROVIDER_CRASH_WORD") or "").lower()
    if crash_word and crash_word in words:
        os.kill(os.getpid(), signal.SIGKILL)
    hang_word = str(_setting("LOCAL_PROVIDER_HANG_WORD") or "").lower()
    if hang_word and hang_word in words and (request.job_id, request.index) not in _hung_once:
        _hung_once.add((request.job_id, request.index))
        time.sleep(float(_setting("LOCAL_PROVIDER_HANG_SECONDS") or 0))


# -- settings ----------------------------------------------------------------------------------


def _setting(name: str) -> Any:
    """The Django setting `name` when settings are configured, else the environment variable."""
    try:
        from django.conf import settings
        from django.core.exceptions import ImproperlyConfigured

        try:
            value = getattr(settings, name, None)
        except (ImproperlyConfigured, ImportError):
            value = None
    except ImportError:  # Django is not installed
        value = None
    if value is None:
        value = os.environ.get(name)
    return value


def _latency_setting() -> int:
    try:
        return max(0, int(float(_setting("LOCAL_PROVIDER_LATENCY_MS"))))
    except (TypeError, ValueError):
        return DEFAULT_LATENCY_MS


def _previews_setting() -> bool:
    value = _setting("LOCAL_PROVIDER_PREVIEWS")
    if isinstance(value, bool):
        return value
    return value is None or str(value).strip().lower() != "false"


def _int_setting(name: str) -> int:
    try:
        return int(_setting(name) or 0)
    except (TypeError, ValueError):
        return 0


def _failure_rate_setting() -> float:
    try:
        return min(1.0, max(0.0, float(_setting("LOCAL_PROVIDER_TRANSIENT_FAILURE_RATE"))))
    except (TypeError, ValueError):
        return DEFAULT_FAILURE_RATE


# -- input images ------------------------------------------------------------------------------


def _open_source(content: bytes, *, max_side: int) -> Image.Image:
    """The source, upright and in RGB. A run hands over sources already downsized to `max_side`
    (generation/services/inputs.py); the thumbnail only bounds a caller that did not, and leaves
    a source within `max_side` untouched, so its pictures stay byte-identical."""
    try:
        opened = Image.open(io.BytesIO(content))
        opened.draft("RGB", (2048, 2048))  # JPEG: decode at a reduced scale when it is huge
        opened.load()
        opened.thumbnail((max_side, max_side))
        return to_rgb(ImageOps.exif_transpose(opened))
    except Exception as exc:  # Pillow raises many kinds for broken or unknown files
        raise PermanentProviderError(
            "The source image could not be read; please upload a PNG, JPEG or WebP picture.",
            code="INVALID_SOURCE_IMAGE",
        ) from exc
