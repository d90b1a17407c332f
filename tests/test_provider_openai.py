"""The OpenAI provider: the real `openai` client against a fake of the Images API.

Direct calls check the wire format (what is sent for a generation and for an edit with a mask,
what comes back); jobs on a real worker check the faults end to end (a 429 with Retry-After,
a moderation block, a hung call); the API checks what a model cannot do at submit time.
"""

from __future__ import annotations

import io

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from PIL import Image

from credits.models import LedgerEntry
from generation.models import GenerationJob
from generation.providers.base import OutputRequest, PermanentProviderError, ReferenceImage, TransientProviderError
from generation.providers.openai_images import OpenAIProvider
from tests.conftest import wait_for_finish
from tests.factories import png_bytes
from tests.fakes.openai_server import (
    EDITS,
    GENERATIONS,
    PARTIAL_IMAGE_TOKENS,
    FakeOpenAI,
    hang,
    moderation_blocked,
    rate_limited,
)

JOBS = "/api/v1/jobs"
API_KEY = "test-key"
# The worker's per-call timeout, and how long a hung call keeps the fake busy (well beyond it).
CALL_TIMEOUT_SECONDS = 2
HANG_SECONDS = 6


@pytest.fixture(scope="module")
def fake():
    server = FakeOpenAI().start()
    yield server
    server.stop()


@pytest.fixture(autouse=True)
def fresh_fake(fake):
    fake.forget()


@pytest.fixture
def openai_enabled(settings, fake):
    """OpenAI switched on for this (the API) process; the worker gets it from its environment."""
    settings.OPENAI_API_KEY = API_KEY


@pytest.fixture
def provider(openai_enabled, fake, monkeypatch) -> OpenAIProvider:
    monkeypatch.setenv("OPENAI_BASE_URL", f"{fake.url}/v1")
    return OpenAIProvider()


def output_request(**overrides) -> OutputRequest:
    fields = {
        "job_id": "job-1",
        "kind": "image",
        "model": "gpt-image-2",
        "prompt": "chrome nail tips, photorealistic",
        "index": 0,
        "seed": 7,
        "params": {"quality": "standard", "aspect_ratio": "1:1"},
        "timeout_seconds": 5.0,
    }
    return OutputRequest(**{**fields, **overrides})


def rgba_png(width: int, height: int, *, hole: bool) -> bytes:
    """A PNG with an alpha channel; `hole`: a fully transparent square in the middle (a mask)."""
    image = Image.new("RGBA", (width, height), (255, 255, 255, 255))
    if hole:
        image.paste((0, 0, 0, 0), (width // 4, height // 4, 3 * width // 4, 3 * height // 4))
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def opened(content: bytes) -> Image.Image:
    return Image.open(io.BytesIO(content))


# -- the wire format ------------------------------------------------------------------------------


@pytest.mark.django_db
def test_a_generation_sends_model_prompt_size_and_quality_and_returns_the_png_with_its_usage(provider, fake):
    result = provider.generate(output_request(params={"quality": "high", "aspect_ratio": "16:9"}))

    [sent] = fake.received(GENERATIONS)
    assert sent.method == "POST"
    assert sent.headers["authorization"] == f"Bearer {API_KEY}"
    assert sent.json() == {
        "model": "gpt-image-2",
        "prompt": "chrome nail tips, photorealistic",
        "n": 1,
        "size": "1536x864",
        "quality": "high",
    }  # no background or output format unless the job chose them: the API's defaults apply
    assert result.mime == "image/png"
    assert opened(result.content).format == "PNG"
    assert (result.width, result.height) == opened(result.content).size == (1536, 864)
    assert result.report["model_version"] == "gpt-image-2"
    assert result.report["usage"]["input_tokens"] == 50
    assert result.report["usage"]["output_tokens"] == 1056
    assert result.report["size"] == "1536x864" and result.report["quality"] == "high"


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("model", "aspect_ratio", "quality", "size", "openai_quality"),
    [
        ("gpt-image-1.5", "3:2", "draft", "1536x1024", "low"),
        ("gpt-image-1-mini", "2:3", "standard", "1024x1536", "medium"),
        ("gpt-image-2.5-flare", "3:4", "high", "960x1280", "high"),
        ("gpt-image-2.5-sunburst", "9:16", "draft", "864x1536", "low"),
    ],
)
def test_aspect_ratio_and_quality_become_the_size_and_quality_the_model_takes(
    provider, fake, model, aspect_ratio, quality, size, openai_quality
):
    result = provider.generate(output_request(model=model, params={"quality": quality, "aspect_ratio": aspect_ratio}))
    [sent] = fake.generations()
    assert (sent["model"], sent["size"], sent["quality"]) == (model, size, openai_quality)
    assert f"{result.width}x{result.height}" == size


@pytest.mark.django_db
def test_a_chosen_background_and_output_format_are_sent_and_the_image_comes_back_in_that_format(provider, fake):
    result = provider.generate(output_request(params={"background": "transparent", "output_format": "webp"}))
    [sent] = fake.generations()
    assert (sent["background"], sent["output_format"]) == ("transparent", "webp")
    assert result.mime == "image/webp"
    assert opened(result.content).format == "WEBP"


@pytest.mark.django_db
def test_an_edit_sends_the_source_then_the_references_and_the_mask_as_files(provider, fake):
    source = png_bytes(64, 48, colour=(10, 20, 30))
    references = (png_bytes(32, 32, colour=(200, 0, 0)), png_bytes(40, 40, colour=(0, 200, 0)))
    mask = rgba_png(64, 48, hole=True)
    request = output_request(
        kind="edit",
        model="gpt-image-1.5",
        prompt="make the tips gold",
        params={"quality": "draft", "aspect_ratio": "1:1"},
        source_image=source,
        references=tuple(ReferenceImage(content=content, weight=0.5) for content in references),
        mask=mask,
    )
    result = provider.generate(request)

    [edit] = fake.edits()
    assert [image.content for image in edit.images] == [source, *references]
    assert all(image.content_type == "image/png" for image in edit.images)
    assert edit.mask is not None and edit.mask.content == mask
    assert edit.fields == {
        "model": "gpt-image-1.5",
        "prompt": "make the tips gold",
        "n": "1",
        "size": "1024x1024",
        "quality": "low",
    }
    assert fake.received(EDITS)[0].headers["content-type"].startswith("multipart/form-data; boundary=")
    assert result.mime == "image/png" and (result.width, result.height) == (1024, 1024)


@pytest.mark.django_db
def test_openai_errors_become_atelier_errors_without_the_raw_answer(provider, fake):
    fake.script(GENERATIONS, rate_limited("3"), moderation_blocked())

    with pytest.raises(TransientProviderError) as limited:
        provider.generate(output_request())
    assert (limited.value.code, limited.value.retry_after) == ("RATE_LIMITED", 3.0)

    with pytest.raises(PermanentProviderError) as blocked:
        provider.generate(output_request())
    assert blocked.value.code == "CONTENT_POLICY"
    assert "safety system" not in blocked.value.message  # OpenAI's own text goes to the log only


@pytest.mark.django_db
def test_a_call_that_does_not_answer_within_its_timeout_is_a_transient_timeout(provider, fake):
    fake.script(GENERATIONS, hang(HANG_SECONDS))
    with pytest.raises(TransientProviderError) as timed_out:
        provider.generate(output_request(timeout_seconds=0.5))
    assert timed_out.value.code == "PROVIDER_TIMEOUT"


# -- what a model cannot do is refused at submit --------------------------------------------------


def refusal(response, field: str) -> dict:
    assert response.status_code == 400, response.content
    error = response.json()["error"]
    assert error["code"] == "VALIDATION_ERROR"
    assert field in error["details"], error
    assert error["message"].startswith(f"{field}:")
    return error


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("model", "params", "field"),
    [
        ("gpt-image-1.5", {"aspect_ratio": "16:9"}, "params.aspect_ratio"),
        ("gpt-image-2", {"seed": 42}, "params.seed"),
        ("gpt-image-2", {"guidance_scale": 7.5}, "params.guidance_scale"),
        ("gpt-image-2", {"background": "transparent", "output_format": "jpeg"}, "params.output_format"),
    ],
)
def test_an_option_the_model_does_not_take_is_a_400_naming_the_field(alice, openai_enabled, model, params, field):
    response = alice.client.post(
        JOBS, {"prompt": "tips", "provider": "openai", "model": model, "params": params}, format="json"
    )
    refusal(response, field)
    assert not GenerationJob.objects.exists()


@pytest.mark.django_db
def test_openai_without_an_api_key_is_a_400_naming_the_provider_and_the_variable(alice, settings):
    settings.OPENAI_API_KEY = ""
    response = alice.client.post(JOBS, {"prompt": "tips", "provider": "openai"}, format="json")
    error = refusal(response, "provider")
    assert "OPENAI_API_KEY" in error["details"]["provider"][0]
    assert not GenerationJob.objects.exists()


# -- jobs on a real worker ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def stack(make_stack, fake):
    return make_stack(
        OPENAI_API_KEY=API_KEY,
        OPENAI_BASE_URL=f"{fake.url}/v1",
        PROVIDER_TIMEOUT_SECONDS=str(CALL_TIMEOUT_SECONDS),
    )


def upload(person, name: str, content: bytes) -> str:
    response = person.client.post("/api/v1/assets", {"file": SimpleUploadedFile(name, content)}, format="multipart")
    assert response.status_code == 201, response.content
    return response.json()["id"]


def submit(person, **body) -> str:
    body = {"prompt": "gold chrome tips", "provider": "openai", "model": "gpt-image-2", **body}
    response = person.client.post(JOBS, body, format="json")
    assert response.status_code == 202, response.content
    return response.json()["id"]


def captures(job_id: str) -> int:
    return LedgerEntry.objects.filter(job_id=job_id, kind=LedgerEntry.Kind.CAPTURE).count()


@pytest.mark.django_db(transaction=True)
@pytest.mark.worker
def test_an_edit_with_a_mask_submitted_through_the_api_reaches_openai_with_its_images(
    stack, alice, openai_enabled, fake
):
    source = rgba_png(96, 64, hole=False)
    reference = png_bytes(48, 48, colour=(250, 200, 0))
    mask = rgba_png(96, 64, hole=True)
    source_id, reference_id, mask_id = (
        upload(alice, "source.png", source),
        upload(alice, "reference.png", reference),
        upload(alice, "mask.png", mask),
    )
    job_id = submit(
        alice,
        kind="edit",
        inputs={
            "source_asset_id": source_id,
            "references": [{"asset_id": reference_id, "weight": 0.8}],
            "mask_asset_id": mask_id,
        },
    )

    job = wait_for_finish(job_id)
    assert job.status == GenerationJob.Status.SUCCEEDED
    [edit] = fake.edits()
    assert [image.content for image in edit.images] == [source, reference]
    assert edit.mask is not None and edit.mask.content == mask
    assert edit.fields["model"] == "gpt-image-2"
    assert edit.fields["prompt"] == job.optimized_prompt
    body = alice.client.get(f"{JOBS}/{job_id}").json()
    assert [output["mime"] for output in body["outputs"]] == ["image/png"]
    # A worker asks for the default partial images (live previews); OpenAI bills each as tokens.
    assert body["outputs"][0]["provider_report"]["usage"]["total_tokens"] == 1106 + 2 * PARTIAL_IMAGE_TOKENS


@pytest.mark.django_db(transaction=True)
@pytest.mark.worker
def test_a_429_with_retry_after_is_waited_out_and_the_image_is_charged_once(stack, alice, openai_enabled, fake):
    fake.script(GENERATIONS, rate_limited("1"))
    job_id = submit(alice)

    job = wait_for_finish(job_id)
    assert job.status == GenerationJob.Status.SUCCEEDED
    assert len(fake.received(GENERATIONS)) == 2
    first, second = fake.arrivals(GENERATIONS)
    assert second - first >= 0.9  # the worker honoured Retry-After: 1
    assert job.outputs.count() == 1
    assert captures(job_id) == 1
    credits = alice.client.get(f"{JOBS}/{job_id}").json()["credits"]
    assert credits["captured"] == job.credits_per_output
    assert credits["released"] == credits["held"] - job.credits_per_output


@pytest.mark.django_db(transaction=True)
@pytest.mark.worker
def test_a_moderation_block_fails_the_job_with_content_policy_and_charges_nothing(stack, alice, openai_enabled, fake):
    fake.script(GENERATIONS, moderation_blocked())
    job_id = submit(alice, prompt="something the safety system refuses")

    job = wait_for_finish(job_id)
    assert job.status == GenerationJob.Status.FAILED
    body = alice.client.get(f"{JOBS}/{job_id}").json()
    assert body["error"]["code"] == "CONTENT_POLICY"
    assert "content policy" in body["error"]["message"]
    assert body["outputs"] == []
    assert body["credits"]["captured"] == 0
    assert body["credits"]["released"] == body["credits"]["held"]
    assert len(fake.received(GENERATIONS)) == 1  # a refusal is not retried


@pytest.mark.django_db(transaction=True)
@pytest.mark.worker
def test_a_hung_call_times_out_is_retried_and_the_job_finishes(stack, alice, openai_enabled, fake):
    fake.script(GENERATIONS, hang(HANG_SECONDS))
    job_id = submit(alice)

    job = wait_for_finish(job_id, timeout=HANG_SECONDS + 20)
    assert job.status == GenerationJob.Status.SUCCEEDED
    assert len(fake.received(GENERATIONS)) == 2
    first, second = fake.arrivals(GENERATIONS)
    assert second - first < HANG_SECONDS  # retried after the call's own timeout, not after the hang
    assert job.outputs.count() == 1
    assert captures(job_id) == 1
