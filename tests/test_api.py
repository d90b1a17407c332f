"""The REST API without a worker: validation, error shapes, idempotency, subjects, isolation."""

from __future__ import annotations

import uuid

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import connection
from django.db.models import Q
from django.test import Client
from django.test.utils import CaptureQueriesContext

from generation.models import GeneratedOutput, GenerationJob, Look
from generation.services.lifecycle import job_finish
from tests.factories import png_bytes

pytestmark = pytest.mark.django_db

JOBS = "/api/v1/jobs"


def submit(person, headers=None, **body):
    body.setdefault("prompt", "a gold and pink nail design")
    return person.client.post(JOBS, body, format="json", headers=headers or {})


def assert_error(response, status: int, code: str, field: str | None = None) -> dict:
    assert response.status_code == status, response.content
    error = response.json()["error"]
    assert error["code"] == code
    if field is not None:
        assert field in error["details"], error
        assert error["message"].startswith(f"{field}:")
    return error


def test_submit_returns_202_with_location_and_a_queued_job(alice):
    response = submit(alice, count=4, params={"style": "minimal", "seed": 7})
    assert response.status_code == 202
    job = response.json()
    assert response["Location"].endswith(f"/api/v1/jobs/{job['id']}")
    assert job["status"] == "queued"
    assert job["progress"] == {"completed": 0, "total": 4, "current_output_percent": None}
    assert job["queue_position"] >= 1
    assert job["params"]["seed"] == 7
    assert "minimalist" in job["optimized_prompt"]
    assert GenerationJob.objects.get(id=job["id"]).team == alice.team


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"prompt": ""}, "prompt"),
        ({"prompt": "x" * 4001}, "prompt"),
        ({"count": 0}, "count"),
        ({"count": 11}, "count"),
        ({"count": "many"}, "count"),
        ({"kind": "sculpture"}, "kind"),
        ({"provider": "nope"}, "provider"),
        ({"model": "gpt-9000"}, "model"),
        ({"params": {"style": "baroque"}}, "params.style"),
        ({"params": {"seed": -1}}, "params.seed"),
        ({"params": {"aspect_ratio": "5:1"}}, "params.aspect_ratio"),
        ({"params": {"strength": 2}}, "params.strength"),
        ({"params": {"colour": "red"}}, "params.colour"),
        ({"promt": "typo"}, "promt"),
        ({"kind": "edit"}, "inputs.source_asset_id"),
        ({"inputs": {"source_asset_id": "not-a-uuid"}}, "inputs.source_asset_id"),
        ({"inputs": {"references": [{"asset_id": str(uuid.uuid4()), "weight": 0.5}]}}, "inputs.references.0.asset_id"),
        ({"inputs": {"references": [{"asset_id": str(uuid.uuid4()), "weight": 3}]}}, "inputs.references.0.weight"),
        ({"tab": 999999}, "tab"),
        ({"kind": "video", "model": "atelier-sketch-1"}, "kind"),
        # What the model registry says a model cannot do is refused at submit, by field.
        ({"params": {"background": "transparent"}}, "params.background"),
        ({"kind": "video", "params": {"duration_seconds": 5}}, "params.duration_seconds"),
        ({"kind": "video", "count": 5}, "count"),
        ({"kind": "video", "params": {"aspect_ratio": "4:3"}}, "params.aspect_ratio"),
        ({"provider": "openai"}, "provider"),  # no OPENAI_API_KEY in the tests
        ({"provider": "vertex"}, "provider"),
    ],
)
def test_invalid_submit_names_the_field_and_creates_nothing(alice, body, field):
    response = submit(alice, **body)
    assert_error(response, 400, "VALIDATION_ERROR", field)
    assert not GenerationJob.objects.exists()


def test_malformed_json_is_a_parse_error_not_a_500(alice):
    response = alice.client.post(JOBS, data="{not json", content_type="application/json")
    assert_error(response, 400, "PARSE_ERROR")


def test_estimate_returns_the_optimized_prompt_and_creates_nothing(alice):
    response = alice.client.post(f"{JOBS}/estimate", {"prompt": "chrome tips", "count": 3}, format="json")
    assert response.status_code == 200
    assert response.json()["outputs"] == 3
    assert response.json()["optimized_prompt"].startswith("chrome tips, photorealistic")
    assert not GenerationJob.objects.exists()


def test_same_idempotency_key_and_body_returns_the_same_job(alice):
    first = submit(alice, headers={"Idempotency-Key": "k-1"}, count=2)
    second = submit(alice, headers={"Idempotency-Key": "k-1"}, count=2)
    assert first.status_code == second.status_code == 202
    assert first.json()["id"] == second.json()["id"]
    assert second["Idempotent-Replayed"] == "true"
    assert GenerationJob.objects.count() == 1


def test_same_idempotency_key_with_another_body_is_422(alice):
    submit(alice, headers={"Idempotency-Key": "k-2"}, count=2)
    response = submit(alice, headers={"Idempotency-Key": "k-2"}, count=3)
    assert_error(response, 422, "IDEMPOTENCY_CONFLICT")
    assert GenerationJob.objects.count() == 1


def test_idempotency_keys_are_per_team(alice, charlie):
    first = submit(alice, headers={"Idempotency-Key": "shared"})
    other = submit(charlie, headers={"Idempotency-Key": "shared"})
    assert first.status_code == other.status_code == 202
    assert first.json()["id"] != other.json()["id"]


def test_active_subject_key_returns_the_active_job_with_200(alice):
    first = submit(alice, subject_key="character-7")
    second = submit(alice, subject_key="character-7", prompt="another pose")
    assert first.status_code == 202
    assert second.status_code == 200
    assert second.json()["id"] == first.json()["id"]
    assert GenerationJob.objects.count() == 1


def test_subject_key_is_free_again_once_its_job_finished(alice):
    first = submit(alice, subject_key="variant-a").json()
    alice.client.post(f"{JOBS}/{first['id']}/cancel")
    second = submit(alice, subject_key="variant-a")
    assert second.status_code == 202
    assert second.json()["id"] != first["id"]


def test_job_list_takes_the_same_queries_for_2_or_12_queued_jobs_and_shows_their_queue_positions(alice):
    def list_queries() -> tuple[int, list]:
        with CaptureQueriesContext(connection) as queries:
            body = alice.client.get(JOBS).json()
        return len(queries), [job["queue_position"] for job in body["results"]]

    for _ in range(2):
        submit(alice)
    few, positions = list_queries()
    assert positions == [2, 1]
    for _ in range(10):
        submit(alice)
    many, positions = list_queries()
    assert many == few
    assert positions == list(range(12, 0, -1))


def test_job_list_is_newest_first_and_filters_by_status_and_kind(alice):
    older = submit(alice, prompt="older").json()
    newer = submit(alice, prompt="newer").json()
    alice.client.post(f"{JOBS}/{older['id']}/cancel")
    listing = alice.client.get(JOBS).json()
    assert [job["id"] for job in listing["results"]] == [newer["id"], older["id"]]
    canceled = alice.client.get(JOBS, {"status": "canceled"}).json()
    assert [job["id"] for job in canceled["results"]] == [older["id"]]
    assert alice.client.get(JOBS, {"kind": "edit"}).json()["count"] == 0
    assert_error(alice.client.get(JOBS, {"status": "sleeping"}), 400, "VALIDATION_ERROR", "status")
    assert_error(alice.client.get(JOBS, {"limit": "-3"}), 400, "VALIDATION_ERROR", "limit")


def test_cancel_of_a_queued_job_cancels_it_at_once(alice):
    job = submit(alice, count=3).json()
    response = alice.client.post(f"{JOBS}/{job['id']}/cancel")
    assert response.status_code == 200
    assert response.json()["status"] == "canceled"
    again = alice.client.post(f"{JOBS}/{job['id']}/cancel")
    assert_error(again, 409, "INVALID_JOB_STATUS")


def test_retry_of_an_active_job_is_409_and_download_without_images_is_409(alice):
    job = submit(alice).json()
    assert_error(alice.client.post(f"{JOBS}/{job['id']}/retry"), 409, "INVALID_JOB_STATUS")
    assert_error(alice.client.get(f"{JOBS}/{job['id']}/download"), 409, "NO_OUTPUTS")


def test_member_of_the_team_sees_the_teams_jobs(alice, bob):
    job = submit(alice).json()
    assert bob.client.get(f"{JOBS}/{job['id']}").status_code == 200


def _job_with_look(person) -> tuple[str, str]:
    job_id = submit(person, count=1).json()["id"]
    job = GenerationJob.objects.get(id=job_id)
    GeneratedOutput.objects.create(
        job=job, index=0, file="x.png", mime="image/png", width=1, height=1, bytes=1, sha256="0"
    )
    job_finish(job_id=job.id, fence=Q(), status="failed", error_code="TEST", error_message="made by the test")
    return job_id, str(Look.objects.get(job=job).id)


def test_every_endpoint_answers_404_for_another_teams_objects(alice, charlie):
    job_id, look_id = _job_with_look(alice)
    upload = alice.client.post("/api/v1/assets", {"file": SimpleUploadedFile("a.png", png_bytes())}, format="multipart")
    asset_id = upload.json()["id"]
    requests = [
        ("get", f"{JOBS}/{job_id}"),
        ("post", f"{JOBS}/{job_id}/cancel"),
        ("post", f"{JOBS}/{job_id}/retry"),
        ("get", f"{JOBS}/{job_id}/download"),
        ("get", f"{JOBS}/{job_id}/outputs/1"),
        ("get", f"/api/v1/assets/{asset_id}/content"),
        ("get", f"/api/v1/looks/{look_id}"),
        ("delete", f"/api/v1/looks/{look_id}"),
    ]
    for method, path in requests:
        response = getattr(charlie.client, method)(path)
        assert_error(response, 404, "NOT_FOUND")
    # Nor can his job reference her uploads.
    response = submit(charlie, kind="edit", inputs={"source_asset_id": asset_id})
    assert_error(response, 400, "VALIDATION_ERROR", "inputs.source_asset_id")
    assert charlie.client.get(JOBS).json()["count"] == 0
    assert charlie.client.get("/api/v1/looks").json()["count"] == 0
    assert Look.objects.filter(id=look_id).exists()


def test_every_endpoint_answers_401_without_authentication(anonymous):
    some_id = uuid.uuid4()
    requests = [
        ("get", JOBS), ("post", JOBS), ("post", f"{JOBS}/estimate"), ("get", f"{JOBS}/{some_id}"),
        ("post", f"{JOBS}/{some_id}/cancel"), ("post", f"{JOBS}/{some_id}/retry"),
        ("get", f"{JOBS}/{some_id}/download"), ("get", f"{JOBS}/{some_id}/outputs/1"),
        ("post", "/api/v1/assets"), ("get", f"/api/v1/assets/{some_id}/content"),
        ("get", "/api/v1/activity"), ("post", "/api/v1/activity/seen"),
        ("get", "/api/v1/looks"), ("get", f"/api/v1/looks/{some_id}"), ("delete", f"/api/v1/looks/{some_id}"),
    ]  # fmt: skip
    for method, path in requests:
        response = getattr(anonymous, method)(path)
        assert_error(response, 401, "NOT_AUTHENTICATED")
        assert response["WWW-Authenticate"].startswith("Bearer")


def test_a_wrong_api_key_is_401(anonymous):
    anonymous.credentials(HTTP_AUTHORIZATION="Bearer atl_deadbeef_nope")
    assert_error(anonymous.get(JOBS), 401, "NOT_AUTHENTICATED")


def test_pages_redirect_to_login_without_a_session(alice):
    job_id = submit(alice).json()["id"]
    client = Client()
    for path in ("/", f"/jobs/{job_id}/"):
        response = client.get(path)
        assert response.status_code == 302
        assert response["Location"].startswith("/accounts/login/")


def test_job_page_of_another_team_is_404(alice, charlie):
    job_id = submit(alice).json()["id"]
    client = Client()
    client.force_login(charlie.user)
    assert client.get(f"/jobs/{job_id}/").status_code == 404
    client.force_login(alice.user)
    assert client.get(f"/jobs/{job_id}/").status_code == 200


def test_session_api_calls_need_csrf(alice):
    client = Client(enforce_csrf_checks=True)
    client.force_login(alice.user)
    assert client.get(JOBS).status_code == 200
    response = client.post(JOBS, {"prompt": "x"}, content_type="application/json")
    assert_error(response, 403, "PERMISSION_DENIED")


def test_unknown_api_path_is_a_json_404(alice):
    response = alice.client.get("/api/v1/nothing-here")
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "NOT_FOUND"


def test_upload_accepts_an_image_and_reports_its_size(alice):
    response = alice.client.post(
        "/api/v1/assets", {"file": SimpleUploadedFile("ref.png", png_bytes(120, 80))}, format="multipart"
    )
    assert response.status_code == 201
    body = response.json()
    assert (body["width"], body["height"], body["mime"]) == (120, 80, "image/png")
    content = alice.client.get(f"/api/v1/assets/{body['id']}/content")
    assert b"".join(content.streaming_content).startswith(b"\x89PNG")


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        (b"", "empty"),
        (b"GIF89a" + b"\0" * 100, "not a PNG"),
        (b"%PDF-1.4 hello", "not a PNG"),
        (png_bytes(300, 300)[:-30], "damaged"),
    ],
)
def test_upload_refuses_what_is_not_a_readable_image(alice, content, reason):
    response = alice.client.post("/api/v1/assets", {"file": SimpleUploadedFile("x.png", content)}, format="multipart")
    error = assert_error(response, 400, "VALIDATION_ERROR", "file")
    assert reason in error["message"]


def test_upload_refuses_too_many_pixels_and_too_many_bytes(alice, settings):
    settings.UPLOAD_MAX_PIXELS = 100 * 100
    big = alice.client.post(
        "/api/v1/assets", {"file": SimpleUploadedFile("b.png", png_bytes(200, 200))}, format="multipart"
    )
    assert "pixels" in assert_error(big, 400, "VALIDATION_ERROR", "file")["message"]
    settings.UPLOAD_MAX_BYTES = 50
    heavy = alice.client.post(
        "/api/v1/assets", {"file": SimpleUploadedFile("h.png", png_bytes(20, 20))}, format="multipart"
    )
    assert "larger" in assert_error(heavy, 400, "VALIDATION_ERROR", "file")["message"]


def test_upload_without_a_file_names_the_field(alice):
    assert_error(alice.client.post("/api/v1/assets", {}, format="multipart"), 400, "VALIDATION_ERROR", "file")


def test_activity_lists_active_and_unseen_finished_and_seen_clears_them(alice, bob):
    active = submit(alice).json()
    finished = submit(alice).json()
    alice.client.post(f"{JOBS}/{finished['id']}/cancel")
    submit(bob)  # Bob's own job is not in Alice's notice
    activity = alice.client.get("/api/v1/activity").json()
    assert [job["id"] for job in activity["active"]] == [active["id"]]
    assert [job["id"] for job in activity["unseen_finished"]] == [finished["id"]]
    assert alice.client.post("/api/v1/activity/seen", {}, format="json").json() == {"marked": 1}
    assert alice.client.get("/api/v1/activity").json()["unseen_finished"] == []
    assert_error(
        alice.client.post("/api/v1/activity/seen", {"ids": ["x"]}, format="json"), 400, "VALIDATION_ERROR", "ids.0"
    )


def test_looks_list_and_delete(alice):
    job_id, look_id = _job_with_look(alice)
    looks = alice.client.get("/api/v1/looks").json()
    assert [look["id"] for look in looks["results"]] == [look_id]
    assert looks["results"][0]["job_id"] == job_id
    assert alice.client.delete(f"/api/v1/looks/{look_id}").status_code == 204
    assert alice.client.get("/api/v1/looks").json()["count"] == 0
    assert GeneratedOutput.objects.filter(job_id=job_id).count() == 1  # the job keeps its image


def test_openapi_schema_and_docs_are_served(anonymous):
    schema = anonymous.get("/api/schema/")
    assert schema.status_code == 200
    assert b"/api/v1/jobs/{job_id}/retry" in schema.content
    docs = anonymous.get("/api/docs/")
    assert docs.status_code == 200
    assert b"swagger" in docs.content.lower()


def test_models_lists_only_the_providers_with_credentials(alice, settings):
    settings.OPENAI_API_KEY = ""
    settings.GEMINI_API_KEY = ""
    settings.VERTEX_API_KEY = ""
    settings.GOOGLE_CLOUD_PROJECT = ""
    body = alice.client.get("/api/v1/models").json()
    assert [provider["name"] for provider in body] == ["local"]
    local = body[0]
    assert local["default_model"] == "atelier-sketch-1"
    motion = next(model for model in local["models"] if model["id"] == "atelier-motion-1")
    assert motion["kinds"] == ["video"]
    assert motion["credits_unit"] == "second"
    assert motion["durations"][0] == 3

    settings.OPENAI_API_KEY = "sk-test"
    body = alice.client.get("/api/v1/models").json()
    openai = next(provider for provider in body if provider["name"] == "openai")
    ids = [model["id"] for model in openai["models"]]
    assert "gpt-image-2" in ids
    # Retired models are never offered.
    assert not {"gpt-image-1", "dall-e-2", "dall-e-3"} & set(ids)


def test_a_provider_without_credentials_is_refused_naming_its_variable(alice, settings):
    settings.OPENAI_API_KEY = ""
    response = submit(alice, provider="openai")
    body = assert_error(response, 400, "VALIDATION_ERROR", "provider")
    assert "OPENAI_API_KEY" in str(body)


def test_a_video_is_priced_per_second_of_clip(alice):
    response = alice.client.post(
        f"{JOBS}/estimate",
        {"prompt": "a drifting nebula", "kind": "video", "params": {"duration_seconds": 4}},
        format="json",
    )
    assert response.status_code == 200
    assert response.json()["credits_per_output"] == 4  # 1 credit a second for the local motion model
