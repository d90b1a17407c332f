"""The clips of the offline ``local`` provider: its art, filmed by a slow camera, as H.264 MP4.

A clip is one picture from ``local_art.render`` seen through a camera that glides across it,
pushing in or pulling back and turning a degree or two, eased in and out so the move looks
deliberate. The picture is drawn once, larger than the frame, so every frame only crops, turns
and scales it a little (a move that needs no more pixels than were drawn never shows an edge).

The encoding is what browsers play everywhere, Debian's Chromium included: H.264 (libx264,
shipped in PyAV's wheel, so nothing is downloaded at run time) in MP4, yuv420p, tagged BT.709,
with the index at the front ("faststart") so playback starts before the whole file has arrived.
Clips are deterministic: the same prompt, seed, index and parameters give byte-identical MP4s,
because x264 runs single-threaded (its output depends on its thread count) and the camera move is
drawn from a hash of the request. The same design is filmed whatever the duration or quality:
a longer clip is the same move, slower.
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import random
import tempfile
from dataclasses import dataclass, replace
from fractions import Fraction
from pathlib import Path

import av
from av.video.reformatter import ColorRange, Colorspace, Interpolation, VideoReformatter
from PIL import Image

from generation.providers.base import OutputRequest, PermanentProviderError, ProviderOutput
from generation.providers.catalog import PROVIDERS, ModelSpec
from generation.providers.errors import INVALID_REQUEST
from generation.providers.local_art import render

MODEL_ID = "atelier-motion-1"


def _registered_model() -> ModelSpec:
    """The durations and aspect ratios a clip may have are the registry's to say."""
    model = PROVIDERS["local"].model(MODEL_ID)
    if model is None:
        raise LookupError(f"{MODEL_ID} is missing from the model registry")
    return model


MODEL = _registered_model()

# The frame of each aspect ratio the model offers: small, even sizes (yuv420p halves the chroma
# planes) of about 230,000 pixels each.
CLIP_SIZES = {"16:9": (640, 360), "9:16": (360, 640), "1:1": (480, 480)}
FPS = 24
# Seconds of the clip between keyframes: a <video> seeks without decoding the clip from the start.
KEYFRAME_SECONDS = 1
# Constant quality: flat painted art compresses well, so a clip is tens of kilobytes per second.
CRF = 23
# Measured on this art at CRF 23: "veryfast" makes the smallest clips of all the presets tried
# (ultrafast's are six times larger, superfast's 1.7 times; faster and medium are larger and
# slower), and films a 3 s clip in about 0.75 s on a small two-core machine.
PRESET = "veryfast"

_CAMERA_VERSION = b"atelier-motion-v1"
# The picture is drawn this much larger than the frame; the camera never needs more.
OVERSCAN = 1.5
# Source pixels per frame pixel at the two ends of a move (above 1: pulled back).
SCALE_RANGE = (0.95, 1.2)
MAX_TURN_DEGREES = 1.5


@dataclass(frozen=True)
class ClipPlan:
    """What a request asks to be filmed: the frame size and how many frames."""

    size: tuple[int, int]
    duration_seconds: int

    @property
    def frames(self) -> int:
        return self.duration_seconds * FPS


def clip_plan(request: OutputRequest) -> ClipPlan:
    """The clip `request` asks for; a duration or aspect ratio the model does not make is refused
    for good (the API refuses both at submit time; this guards the other callers)."""
    params = request.params or {}
    aspect_ratio = params.get("aspect_ratio") or MODEL.aspect_ratios[0]
    if aspect_ratio not in MODEL.aspect_ratios:
        raise PermanentProviderError(
            f"Clips are made in {', '.join(MODEL.aspect_ratios)}, not {aspect_ratio}.", code=INVALID_REQUEST
        )
    try:
        duration = int(params.get("duration_seconds") or MODEL.default_duration)
    except (TypeError, ValueError):
        duration = 0
    if duration not in MODEL.durations:
        raise PermanentProviderError(
            f"Clips last {', '.join(str(d) for d in sorted(MODEL.durations))} seconds.", code=INVALID_REQUEST
        )
    return ClipPlan(size=CLIP_SIZES[aspect_ratio], duration_seconds=duration)


def render_clip(request: OutputRequest, plan: ClipPlan) -> ProviderOutput:
    """1. Draw the picture once, OVERSCAN times the frame.
    2. Plan the camera move from a hash of the request.
    3. Film it frame by frame, converting each to BT.709 yuv420p, into a temporary MP4 (the
       muxer rewrites the file to put its index first, which needs a real file).
    The first frame, as a PNG, is the poster."""
    width, height = plan.size
    picture = _overscanned_picture(request, plan.size)
    camera = _Camera.for_request(request, plan.size, picture.size)
    reformatter = VideoReformatter()
    poster = b""
    with tempfile.TemporaryDirectory(prefix="atelier-clip-") as folder:
        path = Path(folder) / "clip.mp4"
        with av.open(str(path), mode="w", format="mp4", options={"movflags": "+faststart"}) as container:
            stream = container.add_stream(
                "libx264", rate=FPS, options={"preset": PRESET, "crf": str(CRF), "threads": "1"}
            )
            stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
            context = stream.codec_context
            context.thread_count = 1
            context.gop_size = FPS * KEYFRAME_SECONDS
            context.time_base = Fraction(1, FPS)
            context.colorspace = context.color_primaries = context.color_trc = 1  # BT.709
            context.color_range = ColorRange.MPEG
            for number in range(plan.frames):
                image = camera.frame(picture, number / max(1, plan.frames - 1))
                if number == 0:
                    poster = _png(image)
                frame = reformatter.reformat(
                    av.VideoFrame.from_image(image),
                    format="yuv420p",
                    src_colorspace=Colorspace.ITU709,
                    dst_colorspace=Colorspace.ITU709,
                    src_color_range=ColorRange.JPEG,
                    dst_color_range=ColorRange.MPEG,
                    interpolation=Interpolation.BILINEAR,
                    threads=1,
                )
                frame.pts = number
                frame.time_base = Fraction(1, FPS)
                container.mux(stream.encode(frame))
            container.mux(stream.encode(None))
        content = path.read_bytes()
    return ProviderOutput(
        content=content,
        mime="video/mp4",
        width=width,
        height=height,
        poster=poster,
        report={"model_version": MODEL_ID, "frames": plan.frames, "duration_seconds": plan.duration_seconds},
    )


def _overscanned_picture(request: OutputRequest, size: tuple[int, int]) -> Image.Image:
    # Quality only sets the resolution of the art (the design is the same), and "high" is the
    # one that is larger than every overscanned frame; the duration must not change the design.
    params = {k: v for k, v in (request.params or {}).items() if k != "duration_seconds"}
    art = render(replace(request, params={**params, "quality": "high"}))
    target = (round(size[0] * OVERSCAN), round(size[1] * OVERSCAN))
    return art.resize(target, Image.Resampling.LANCZOS)


def _png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", compress_level=1)
    return buffer.getvalue()


@dataclass(frozen=True)
class _Camera:
    """A move from one view of the picture to another: centre, scale (source pixels per frame
    pixel) and turn (radians) at the start and at the end."""

    frame_size: tuple[int, int]
    start: tuple[float, float, float, float]  # centre x, centre y, scale, turn
    end: tuple[float, float, float, float]

    @classmethod
    def for_request(cls, request: OutputRequest, frame_size: tuple[int, int], picture_size: tuple[int, int]) -> _Camera:
        rng = random.Random(_camera_seed(request))
        low, high = SCALE_RANGE
        scales = (high, low) if rng.random() < 0.6 else (low, high)  # push in more often than pull back
        turn = math.radians(MAX_TURN_DEGREES)
        turns = (rng.uniform(-turn, turn), rng.uniform(-turn, turn))
        # The widest view the move takes, turned as far as it may be: a centre that keeps this
        # view inside the picture keeps every view of the move inside it (the view's extent
        # grows with its scale and with its turn, and both move monotonically).
        width, height = frame_size
        cos, sin = math.cos(turn), math.sin(turn)
        half_w = high * (width * cos + height * sin) / 2
        half_h = high * (width * sin + height * cos) / 2
        # (less a pixel, so that bilinear sampling at the very edge stays inside too)
        room_x = max(0.0, picture_size[0] / 2 - half_w - 1)
        room_y = max(0.0, picture_size[1] / 2 - half_h - 1)
        # A drift across the picture along a random direction, through its middle.
        angle = rng.uniform(0, 2 * math.pi)
        reach = rng.uniform(0.5, 1.0)
        dx, dy = math.cos(angle) * room_x * reach, math.sin(angle) * room_y * reach
        cx, cy = picture_size[0] / 2, picture_size[1] / 2
        return cls(
            frame_size=frame_size,
            start=(cx - dx, cy - dy, scales[0], turns[0]),
            end=(cx + dx, cy + dy, scales[1], turns[1]),
        )

    def frame(self, picture: Image.Image, progress: float) -> Image.Image:
        """The view at `progress` (0 to 1) of the move, eased in and out."""
        eased = (1 - math.cos(math.pi * progress)) / 2
        cx, cy, scale, turn = (a + (b - a) * eased for a, b in zip(self.start, self.end, strict=True))
        width, height = self.frame_size
        # The affine map from a frame pixel to a picture pixel: turn and scale about the centres.
        a, b = scale * math.cos(turn), -scale * math.sin(turn)
        d, e = scale * math.sin(turn), scale * math.cos(turn)
        c = cx - a * width / 2 - b * height / 2
        f = cy - d * width / 2 - e * height / 2
        return picture.transform(self.frame_size, Image.Transform.AFFINE, (a, b, c, d, e, f), Image.Resampling.BILINEAR)


def _camera_seed(request: OutputRequest) -> int:
    params = {k: v for k, v in (request.params or {}).items() if k not in ("quality", "duration_seconds")}
    payload = {"prompt": request.prompt, "seed": request.seed, "index": request.index, "params": params}
    text = json.dumps(payload, sort_keys=True, default=str, ensure_ascii=True)
    return int.from_bytes(hashlib.sha256(_CAMERA_VERSION + text.encode()).digest(), "big")
