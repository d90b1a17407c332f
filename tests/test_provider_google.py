"""Contract tests of the Google providers: the real `google-genai` client talks over HTTP to a
fake that speaks the Gemini Developer API and Vertex AI (tests/fakes/google_server.py).

The jobs run on a real worker: each test checks what was sent (path, key, model, prompt, aspect
ratio, seeds, inline images) and what a person then sees on the job: its outputs, what Google
reported about them, its credits. The unhappy answers are also asked of a provider in this
process, to check how each is sorted (retry, start another operation, or give up).
"""

from __future__ import annotations

import base64
from collections.abc import Callable
from datetime import timedelta

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from generation.models import GeneratedOutput
from generation.providers.base import (
    OperationLost,
    OperationStatus,
    OutputRequest,
    PermanentProviderError,
    TransientProviderError,
)
from generation.providers.google import GeminiProvider
from generation.providers.google_vertex import VertexProvider
from tests.conftest import wait_for_finish
from tests.factories import png_bytes
from tests.fakes.google_server import (
    FakeGoogle,
    gemini_blocked,
    gemini_prompt_blocked,
    google_error,
    png_of,
    rate_limited,
    tiny_mp4,
)
from tests.fakes.server import Answer, Scripted
from tests.processes import free_port


def on_a_worker(test: Callable[..., None]) -> Callable[..., None]:
    return pytest.mark.worker(pytest.mark.django_db(transaction=True)(test))


GEMINI_KEY = "test-gemini-key"
VERTEX_KEY = "test-vertex-key"
POLLS_BEFORE_DONE = 2


@pytest.fixture(scope="module")
def google():
    fake = FakeGoogle(polls_before_done=POLLS_BEFORE_DONE).start()
    yield fake
    fake.stop()


@pytest.fixture(scope="module")
def stack(make_stack, google):
    return make_stack(
        GEMINI_API_KEY=GEMINI_KEY,
        GOOGLE_GEMINI_BASE_URL=google.url,
        VERTEX_API_KEY=VERTEX_KEY,
        GOOGLE_VERTEX_BASE_URL=google.url,
        PROVIDER_POLL_SECONDS="0.2",
        PROVIDER_TIMEOUT_SECONDS="3",
    )


@pytest.fixture(autouse=True)
def google_enabled(settings, google):
    """The API offers a provider only when its key is set (in this process as in the worker's)."""
    settings.GEMINI_API_KEY = GEMINI_KEY
    settings.VERTEX_API_KEY = VERTEX_KEY
    google.reset()


def submit(person, body: dict) -> dict:
    response = person.client.post("/api/v1/jobs", body, format="json")
    assert response.status_code == 202, response.json()
    wait_for_finish(response.json()["id"])
    return person.client.get(f"/api/v1/jobs/{response.json()['id']}").json()


def output_content(person, job: dict, number: int = 1) -> bytes:
    response = person.client.get(f"/api/v1/jobs/{job['id']}/outputs/{number}")
    assert response.status_code == 200
    return b"".join(response.streaming_content) if response.streaming else response.content


@on_a_worker
def test_gemini_image_sends_prompt_ratio_and_reference_inline_and_keeps_what_gemini_reported(stack, google, alice):
    reference = png_bytes(40, 30, colour=(10, 200, 30))
    asset = alice.client.post(
        "/api/v1/assets", {"file": SimpleUploadedFile("reference.png", reference)}, format="multipart"
    ).json()
    job = submit(
        alice,
        {
            "prompt": "a lighthouse at dusk",
            "provider": "gemini",
            "model": "gemini-2.5-flash-image",
            "params": {"aspect_ratio": "3:4"},
            "inputs": {"references": [{"asset_id": asset["id"], "weight": 0.8}]},
        },
    )

    assert job["status"] == "succeeded", job["error"]
    [output] = job["outputs"]
    assert (output["mime"], output["width"], output["height"]) == ("image/png", 48, 64)
    assert output_content(alice, job) == png_of(48, 64)
    assert output["provider_report"] == {
        "model_version": "gemini-2.5-flash-image",
        "response_id": "response-1",
        "usage": {"prompt_token_count": 271, "candidates_token_count": 1290, "total_token_count": 1561},
    }
    assert job["credits"] == {"per_output": 3, "held": 3, "captured": 3, "released": 0}

    [call] = google.received(":generateContent")
    assert call.path == "/v1/models/gemini-2.5-flash-image:generateContent"
    assert call.headers["x-goog-api-key"] == GEMINI_KEY
    sent = call.json()
    assert sent["generationConfig"] == {"responseModalities": ["IMAGE"], "imageConfig": {"aspectRatio": "3:4"}}
    parts = sent["contents"][0]["parts"]
    assert parts[0] == {"text": job["optimized_prompt"]}
    images = [part["inlineData"] for part in parts if "inlineData" in part]
    # The SDK encodes bytes in base64's URL-safe alphabet (the API reads either).
    assert [base64.urlsafe_b64decode(image["data"]) for image in images] == [reference]
    assert [image.get("mimeType", image.get("mime_type")) for image in images] == ["image/png"]


@on_a_worker
@pytest.mark.parametrize(
    "answer", [gemini_blocked("IMAGE_SAFETY"), gemini_prompt_blocked("PROHIBITED_CONTENT")], ids=["image", "prompt"]
)
def test_safety_blocked_gemini_answer_fails_the_job_with_content_policy_and_charges_nothing(
    stack, google, alice, answer: Answer
):
    google.script(":generateContent", Scripted(answer))
    job = submit(alice, {"prompt": "something Gemini will not draw", "provider": "gemini"})

    assert job["status"] == "failed"
    assert job["error"]["code"] == "CONTENT_POLICY"
    assert "Google Gemini's content policy" in job["error"]["message"]
    assert job["outputs"] == []
    assert job["credits"] == {"per_output": 3, "held": 3, "captured": 0, "released": 3}
    assert len(google.received(":generateContent")) == 1  # a refusal is not asked again


@on_a_worker
def test_gemini_429_with_retry_after_is_waited_out_and_the_image_is_charged_once(stack, google, alice):
    google.script(":generateContent", Scripted(rate_limited(retry_after=2)))
    job = submit(alice, {"prompt": "a busy harbour", "provider": "gemini"})

    assert job["status"] == "succeeded", job["error"]
    assert len(job["outputs"]) == 1
    assert job["credits"] == {"per_output": 3, "held": 3, "captured": 3, "released": 0}
    assert len(google.received(":generateContent")) == 2
    finished = GeneratedOutput.objects.get(job_id=job["id"]).job
    # The pipeline's own backoff is at most 0.5 s here: only the Retry-After makes the job wait 2 s.
    assert finished.finished_at - finished.started_at >= timedelta(seconds=2)


@on_a_worker
def test_imagen_batch_makes_one_predict_call_per_image_with_its_seed_and_options(stack, google, alice):
    job = submit(
        alice,
        {
            "prompt": "a red fox in the snow",
            "provider": "vertex",
            "model": "imagen-4.0-generate-001",
            "count": 3,
            "params": {"aspect_ratio": "16:9", "seed": 1234, "negative_prompt": "blurry", "guidance_scale": 7.5},
        },
    )

    assert job["status"] == "succeeded", job["error"]
    assert [(o["index"], o["mime"], o["width"], o["height"]) for o in job["outputs"]] == [
        (number, "image/png", 64, 36) for number in (1, 2, 3)
    ]
    assert {o["provider_report"]["revised_prompt"] for o in job["outputs"]} == {
        f"{job['optimized_prompt']}, rendered in rich detail"
    }
    assert job["credits"] == {"per_output": 3, "held": 9, "captured": 9, "released": 0}

    calls = google.received(":predict")
    assert [call.path for call in calls] == ["/v1beta1/publishers/google/models/imagen-4.0-generate-001:predict"] * 3
    assert {call.headers["x-goog-api-key"] for call in calls} == {VERTEX_KEY}
    assert [call.json()["instances"] for call in calls] == [[{"prompt": job["optimized_prompt"]}]] * 3
    assert [call.json()["parameters"] for call in calls] == [
        {
            "sampleCount": 1,
            "aspectRatio": "16:9",
            "negativePrompt": "blurry",
            "guidanceScale": 7.5,
            "seed": seed,
            "addWatermark": False,
            "includeRaiReason": True,
        }
        for seed in (1234, 1235, 1236)
    ]


@on_a_worker
def test_veo_clip_is_one_operation_polled_to_its_end_and_stored_as_an_mp4_with_a_poster(stack, google, alice):
    job = submit(
        alice,
        {
            "prompt": "waves rolling onto a beach",
            "kind": "video",
            "provider": "vertex",
            "model": "veo-3.0-fast-generate-001",
            "params": {"aspect_ratio": "9:16", "duration_seconds": 4},
        },
    )

    assert job["status"] == "succeeded", job["error"]
    [output] = job["outputs"]
    assert (output["mime"], output["width"], output["height"]) == ("video/mp4", 36, 64)
    assert output_content(alice, job) == tiny_mp4(36, 64)
    poster = alice.client.get(output["poster_url"])
    assert poster.status_code == 200
    assert poster["Content-Type"] == "image/png"
    assert job["credits"] == {"per_output": 16, "held": 16, "captured": 16, "released": 0}

    [start] = google.received(":predictLongRunning")
    assert start.path == "/v1beta1/publishers/google/models/veo-3.0-fast-generate-001:predictLongRunning"
    assert start.headers["x-goog-api-key"] == VERTEX_KEY
    assert start.json() == {
        "instances": [{"prompt": job["optimized_prompt"]}],
        "parameters": {"sampleCount": 1, "aspectRatio": "9:16", "durationSeconds": 4, "seed": job["params"]["seed"]},
    }
    [name] = google.operations
    assert output["provider_report"] == {"operation": name, "model_version": "veo-3.0-fast-generate-001"}
    polls = google.received(":fetchPredictOperation")
    assert [poll.json() for poll in polls] == [{"operationName": name}] * (POLLS_BEFORE_DONE + 1)
    assert {poll.path for poll in polls} == {f"/v1beta1/{name.rsplit('/operations/', 1)[0]}:fetchPredictOperation"}


# -- how the unhappy answers are sorted, asked of a provider in this process ------------------


@pytest.fixture
def gemini(monkeypatch, google) -> GeminiProvider:
    monkeypatch.setenv("GOOGLE_GEMINI_BASE_URL", google.url)
    return GeminiProvider()  # a new client, built from the environment above


@pytest.fixture
def vertex(monkeypatch, google) -> VertexProvider:
    monkeypatch.setenv("GOOGLE_VERTEX_BASE_URL", google.url)
    return VertexProvider()


def output_request(kind: str = "image", model: str = "gemini-2.5-flash-image", **params: object) -> OutputRequest:
    return OutputRequest(
        job_id="in-process", kind=kind, model=model, prompt="a quiet lake", index=0, seed=7, params=params,
        timeout_seconds=1,
    )  # fmt: skip


def quota_answer(quota_id: str) -> Answer:
    """Google's 429 for a used-up quota: the same words for a per-minute and a per-day limit."""
    message = "You exceeded your current quota, please check your plan and billing details."
    details = [
        {"@type": "type.googleapis.com/google.rpc.QuotaFailure", "violations": [{"quotaId": quota_id}]},
        {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "7s"},
    ]
    return Answer(429, {"error": {"code": 429, "message": message, "status": "RESOURCE_EXHAUSTED", "details": details}})


def test_a_per_minute_quota_429_is_a_rate_limit_with_its_retry_delay(google, gemini):
    google.script(":generateContent", Scripted(quota_answer("GenerateRequestsPerMinutePerProjectPerModel")))
    with pytest.raises(TransientProviderError) as raised:
        gemini.generate(output_request())
    assert (raised.value.code, raised.value.retry_after) == ("RATE_LIMITED", 7.0)


def test_a_per_day_quota_429_is_a_used_up_quota(google, gemini):
    google.script(":generateContent", Scripted(quota_answer("GenerateRequestsPerDayPerProjectPerModel-FreeTier")))
    with pytest.raises(PermanentProviderError) as raised:
        gemini.generate(output_request())
    assert raised.value.code == "PROVIDER_QUOTA"


def test_a_hung_google_call_gives_up_at_its_timeout(google, gemini):
    google.script(":generateContent", Scripted(gemini_blocked(), hang_seconds=3))
    with pytest.raises(TransientProviderError) as raised:
        gemini.generate(output_request())
    assert raised.value.code == "PROVIDER_TIMEOUT"
    assert google.received(":generateContent")[0].headers["x-server-timeout"] == "1"


def test_an_unreachable_google_is_a_connection_failure(monkeypatch):
    monkeypatch.setenv("GOOGLE_GEMINI_BASE_URL", f"http://127.0.0.1:{free_port()}")
    with pytest.raises(TransientProviderError) as raised:
        GeminiProvider().generate(output_request())
    assert raised.value.code == "PROVIDER_CONNECTION"


@pytest.mark.parametrize(
    "answer",
    [
        Answer(body={}),
        Answer(body={"predictions": [{"raiFilteredReason": "Your current safety filter threshold filtered out..."}]}),
        google_error(400, "The prompt could not be submitted: it violates Google's Responsible AI practices.",
                     "INVALID_ARGUMENT"),
    ],
    ids=["no-prediction", "filtered", "refused-prompt"],
)  # fmt: skip
@pytest.mark.filterwarnings("ignore:The generate_images method is deprecated")  # kept while the SDK has it
def test_an_imagen_answer_without_an_image_is_a_content_policy_refusal(google, vertex, answer: Answer):
    google.script(":predict", Scripted(answer))
    with pytest.raises(PermanentProviderError) as raised:
        vertex.generate(output_request(model="imagen-4.0-fast-generate-001"))
    assert raised.value.code == "CONTENT_POLICY"


def test_a_running_veo_operation_reports_its_progress(google, vertex):
    request = output_request(kind="video", model="veo-3.0-generate-001", aspect_ratio="16:9", duration_seconds=8)
    name = vertex.start(request)
    assert vertex.poll(request, name) == OperationStatus(done=False, progress=25)


def finished_with(body: dict) -> Answer:
    return Answer(body={"name": "ignored", "done": True, **body})


@pytest.mark.parametrize(
    ("answer", "expected"),
    [
        (finished_with({"error": {"code": 13, "message": "Internal error."}}), OperationLost),
        (finished_with({"error": {"code": 8, "message": "Resource exhausted."}}), OperationLost),
        (google_error(404, "Operation not found.", "NOT_FOUND"), OperationLost),
        (finished_with({"error": {"code": 3, "message": "It violates Google's Responsible AI practices."}}),
         PermanentProviderError),
        (finished_with({"response": {"raiMediaFilteredCount": 1, "raiMediaFilteredReasons": ["unsafe"]}}),
         PermanentProviderError),
    ],
    ids=["internal", "exhausted", "unknown", "refused", "all-filtered"],
)  # fmt: skip
def test_a_failed_veo_operation_is_lost_when_another_may_succeed_and_refused_otherwise(
    google, vertex, answer: Answer, expected: type[Exception]
):
    request = output_request(kind="video", model="veo-3.0-generate-001", aspect_ratio="16:9", duration_seconds=8)
    name = vertex.start(request)
    google.script(":fetchPredictOperation", Scripted(answer))
    with pytest.raises(expected) as raised:
        vertex.poll(request, name)
    if expected is PermanentProviderError:
        assert raised.value.code == "CONTENT_POLICY"
