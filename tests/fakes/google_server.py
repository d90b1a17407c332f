"""A fake of Google's generative APIs, as the `google-genai` SDK speaks to them.

It answers both APIs the SDK uses, on one port (the SDK puts the API version and the resource
path after the base URL it is given):

* the Gemini Developer API: `POST /v1/models/{model}:generateContent`;
* Vertex AI, in express mode (`/v1beta1/publishers/google/models/{model}:...`) or with a
  project (`/v1beta1/projects/{p}/locations/{l}/publishers/google/models/{model}:...`):
  `:predict` (Imagen), `:predictLongRunning` (Veo: starts an operation) and
  `:fetchPredictOperation` (the poll the SDK's `operations.get` sends in Vertex mode).

The answers have the real shapes: base64 images in `inlineData` with `usageMetadata`,
`modelVersion` and `responseId`; Imagen `predictions`; Veo operations that stay `done: false`
(with `progressPercent` metadata) for `polls_before_done` polls, or for as long as a test holds
them, and then carry a real, tiny H.264 MP4. Each output is sized by the aspect ratio asked for.
`Answer` builders below script the unhappy answers: a safety block, a 429 with Retry-After.
"""

from __future__ import annotations

import base64
import io
import threading
import uuid
from dataclasses import dataclass
from fractions import Fraction
from functools import cache

import av
from PIL import Image

from tests.fakes.server import Answer, FakeServer, Recorded

# Small outputs of the requested shape: (width, height) by aspect ratio; H.264 needs even sides.
SIZES = {
    "1:1": (64, 64),
    "3:4": (48, 64),
    "4:3": (64, 48),
    "2:3": (42, 64),
    "3:2": (64, 42),
    "9:16": (36, 64),
    "16:9": (64, 36),
}
FAKE_PROJECT_NUMBER = "123456789012"
FAKE_LOCATION = "us-central1"


def png_of(width: int, height: int, colour: tuple[int, int, int] = (30, 140, 90)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), colour).save(buffer, format="PNG")
    return buffer.getvalue()


@cache
def tiny_mp4(width: int, height: int, frames: int = 6) -> bytes:
    """A real H.264 MP4 (yuv420p) of a few frames of solid colour: what a browser plays."""
    buffer = io.BytesIO()
    with av.open(buffer, mode="w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=24)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.codec_context.time_base = Fraction(1, 24)
        for number in range(frames):
            picture = Image.new("RGB", (width, height), (40 + 30 * number, 90, 160))
            frame = av.VideoFrame.from_image(picture)
            frame.pts = number
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    return buffer.getvalue()


def _b64(content: bytes) -> str:
    return base64.b64encode(content).decode()


def google_error(status: int, message: str, status_name: str, headers: dict[str, str] | None = None) -> Answer:
    """An error answer in Google's shape: `{"error": {"code", "message", "status"}}`."""
    return Answer(
        status=status,
        body={"error": {"code": status, "message": message, "status": status_name}},
        headers=headers or {},
    )


def rate_limited(retry_after: int) -> Answer:
    return google_error(
        429,
        "Resource has been exhausted (e.g. check quota).",
        "RESOURCE_EXHAUSTED",
        headers={"Retry-After": str(retry_after)},
    )


def gemini_blocked(finish_reason: str = "IMAGE_SAFETY") -> Answer:
    """A generateContent answer with no image: the candidate was stopped for safety."""
    return Answer(
        body={
            "candidates": [{"content": {"role": "model"}, "finishReason": finish_reason, "index": 0}],
            "usageMetadata": {"promptTokenCount": 12, "totalTokenCount": 12},
            "modelVersion": "gemini-2.5-flash-image",
            "responseId": "blocked-response",
        }
    )


def gemini_prompt_blocked(reason: str = "PROHIBITED_CONTENT") -> Answer:
    """A generateContent answer to a prompt refused before any candidate was made."""
    return Answer(
        body={
            "promptFeedback": {"blockReason": reason},
            "usageMetadata": {"promptTokenCount": 12, "totalTokenCount": 12},
            "modelVersion": "gemini-2.5-flash-image",
            "responseId": "prompt-blocked-response",
        }
    )


@dataclass
class FakeOperation:
    name: str
    model: str
    aspect_ratio: str
    polls: int = 0


class FakeGoogle(FakeServer):
    """See the module docstring. `hold_operations()` keeps every Veo operation running until
    `release_operations()`; `operations_started` counts the predictLongRunning calls."""

    def __init__(self, *, polls_before_done: int = 2) -> None:
        super().__init__()
        self.polls_before_done = polls_before_done
        self.operations: dict[str, FakeOperation] = {}
        self._held = threading.Event()
        self._responses = 0

    # -- what a test controls ----------------------------------------------------------------

    def hold_operations(self) -> None:
        self._held.set()

    def release_operations(self) -> None:
        self._held.clear()

    @property
    def operations_started(self) -> int:
        return len(self.received(":predictLongRunning"))

    def reset(self) -> None:
        """Forget the requests, scripts and operations of an earlier test."""
        with self._lock:
            self.requests.clear()
            self._script.clear()
            self.operations.clear()
            self._responses = 0
        self._held.clear()

    # -- answers -----------------------------------------------------------------------------

    def default_answer(self, request: Recorded) -> Answer:
        resource, _, method = request.path.rpartition(":")
        model = resource.rsplit("/", 1)[-1]
        if method == "generateContent":
            return self._generate_content(request, model)
        if method == "predict":
            return self._predict(request)
        if method == "predictLongRunning":
            return self._start_operation(request, resource, model)
        if method == "fetchPredictOperation":
            return self._fetch_operation(request)
        return google_error(404, f"Method not found: {request.path}", "NOT_FOUND")

    def _generate_content(self, request: Recorded, model: str) -> Answer:
        body = request.json()
        aspect_ratio = body.get("generationConfig", {}).get("imageConfig", {}).get("aspectRatio", "1:1")
        with self._lock:
            self._responses += 1
            response_id = f"response-{self._responses}"
        return Answer(
            body={
                "candidates": [
                    {
                        "content": {
                            "role": "model",
                            "parts": [
                                {"text": "Here is the picture."},
                                {"inlineData": {"mimeType": "image/png", "data": _b64(png_of(*SIZES[aspect_ratio]))}},
                            ],
                        },
                        "finishReason": "STOP",
                        "index": 0,
                    }
                ],
                "usageMetadata": {
                    "promptTokenCount": 271,
                    "candidatesTokenCount": 1290,
                    "totalTokenCount": 1561,
                    "promptTokensDetails": [
                        {"modality": "TEXT", "tokenCount": 13},
                        {"modality": "IMAGE", "tokenCount": 258},
                    ],
                },
                "modelVersion": model,
                "responseId": response_id,
            }
        )

    def _predict(self, request: Recorded) -> Answer:
        body = request.json()
        aspect_ratio = body.get("parameters", {}).get("aspectRatio", "1:1")
        prompt = body["instances"][0]["prompt"]
        return Answer(
            body={
                "predictions": [
                    {
                        "bytesBase64Encoded": _b64(png_of(*SIZES[aspect_ratio], colour=(200, 120, 40))),
                        "mimeType": "image/png",
                        "prompt": f"{prompt}, rendered in rich detail",
                    }
                ]
            }
        )

    def _start_operation(self, request: Recorded, resource: str, model: str) -> Answer:
        aspect_ratio = request.json().get("parameters", {}).get("aspectRatio", "16:9")
        # Vertex names an operation after the model's full resource, with the project's number.
        prefix = (
            "" if resource.split("/")[2] == "projects" else f"projects/{FAKE_PROJECT_NUMBER}/locations/{FAKE_LOCATION}/"
        )
        model_resource = resource.split("/", 2)[2]  # without the leading "/v1beta1/"
        name = f"{prefix}{model_resource}/operations/{uuid.uuid4()}"
        with self._lock:
            self.operations[name] = FakeOperation(name=name, model=model, aspect_ratio=aspect_ratio)
        return Answer(body={"name": name})

    def _fetch_operation(self, request: Recorded) -> Answer:
        name = request.json().get("operationName", "")
        with self._lock:
            operation = self.operations.get(name)
            if operation is not None:
                operation.polls += 1
        if operation is None:
            return google_error(404, f"Operation {name} not found.", "NOT_FOUND")
        if self._held.is_set() or operation.polls <= self.polls_before_done:
            progress = min(95, 25 * operation.polls)
            return Answer(body={"name": name, "done": False, "metadata": {"progressPercent": progress}})
        return Answer(
            body={
                "name": name,
                "done": True,
                "response": {
                    "@type": "type.googleapis.com/cloud.ai.large_models.vision.GenerateVideoResponse",
                    "raiMediaFilteredCount": 0,
                    "videos": [
                        {"bytesBase64Encoded": _b64(tiny_mp4(*SIZES[operation.aspect_ratio])), "mimeType": "video/mp4"}
                    ],
                },
            }
        )
