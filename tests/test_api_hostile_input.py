"""Inputs found by fuzzing the OpenAPI schema (schemathesis) and their neighbours: each is a clear
4xx in the API's error shape, never a 500."""

from __future__ import annotations

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from generation.models import GenerationJob
from tests.factories import png_bytes

pytestmark = pytest.mark.django_db

JOBS = "/api/v1/jobs"
HUGE = 10**30


@pytest.fixture
def asset_id(alice) -> str:
    upload = SimpleUploadedFile("r.png", png_bytes())
    return alice.client.post("/api/v1/assets", {"file": upload}, format="multipart").json()["id"]


def test_the_same_image_twice_in_a_jobs_inputs_is_a_validation_error(alice, asset_id):
    body = {"prompt": "p", "inputs": {"references": [{"asset_id": asset_id}, {"asset_id": asset_id}]}}
    response = alice.client.post(JOBS, body, format="json")
    assert response.status_code == 400
    assert "inputs.references.1.asset_id" in response.json()["error"]["details"]
    as_sketch_too = {
        "prompt": "p",
        "inputs": {"references": [{"asset_id": asset_id}], "sketch": {"asset_id": asset_id}},
    }
    response = alice.client.post(JOBS, as_sketch_too, format="json")
    assert response.status_code == 400
    assert "inputs.sketch.asset_id" in response.json()["error"]["details"]
    assert not GenerationJob.objects.exists()


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"prompt": "p", "tab": HUGE}, "tab"),
        ({"prompt": "p", "params": {"guidance_scale": "NaN"}}, "params.guidance_scale"),
        ({"prompt": "p", "params": {"strength": "Infinity"}}, "params.strength"),
        (
            {
                "prompt": "p",
                "inputs": {"references": [{"asset_id": "00000000-0000-0000-0000-000000000000", "weight": "NaN"}]},
            },
            "inputs.references.0.weight",
        ),
        ({"prompt": "p", "params": "not an object"}, "params"),
        ({"prompt": "p", "inputs": ["not", "an", "object"]}, "inputs"),
        ({"prompt": ["a", "list"]}, "prompt"),
        ({"prompt": "p", "count": True}, "count"),
    ],
)
def test_hostile_job_bodies_name_their_field(alice, body, field):
    response = alice.client.post(JOBS, body, format="json")
    assert response.status_code == 400, response.content
    assert field in response.json()["error"]["details"]


@pytest.mark.parametrize("body", ['["a", "list"]', '"a string"', "42", "null"])
def test_a_body_that_is_not_an_object_is_a_400(alice, body):
    response = alice.client.post(JOBS, data=body, content_type="application/json")
    assert response.status_code == 400
    assert response.json()["error"]["code"] in ("VALIDATION_ERROR", "PARSE_ERROR")


@pytest.mark.parametrize("path", [JOBS, "/api/v1/looks", "/api/v1/credits"])
@pytest.mark.parametrize("query", [{"offset": str(HUGE)}, {"limit": str(HUGE)}, {"offset": "-1"}, {"limit": "x"}])
def test_pagination_parameters_out_of_range_are_400_or_clamped(alice, path, query):
    response = alice.client.get(path, query)
    assert response.status_code in (200, 400), response.content
    if response.status_code == 400:
        assert next(iter(query)) in response.json()["error"]["details"]


# -- bodies: depth, size, media type, JSON types ----------------------------------------------


def _assert_error(response, status: int, code: str) -> dict:
    assert response.status_code == status, response.content
    assert response["Content-Type"] == "application/json"
    error = response.json()["error"]
    assert error["code"] == code
    assert set(error) == {"code", "message", "details"}
    return error


@pytest.mark.parametrize(
    "body",
    [
        "[" * 1000 + "]" * 1000,
        '{"prompt": "p", "params": ' + '{"a": ' * 1000 + "1" + "}" * 1000 + "}",
        '{"prompt": "p", "inputs": {"references": ' + "[" * 33 + "]" * 33 + "}}",
    ],
    ids=["1000-deep array", "1000-deep object in a field", "33 levels"],
)
def test_a_deeply_nested_json_body_is_a_400_parse_error(alice, body):
    error = _assert_error(alice.client.post(JOBS, data=body, content_type="application/json"), 400, "PARSE_ERROR")
    assert "deeper than 32 levels" in error["message"]
    assert not GenerationJob.objects.exists()


def test_brackets_inside_strings_do_not_count_as_nesting(alice):
    prompt = "[{" * 1000 + '\\"['
    response = alice.client.post(JOBS, data=f'{{"prompt": "{prompt}"}}', content_type="application/json")
    assert response.status_code == 202, response.content
    assert GenerationJob.objects.get().prompt == prompt.replace("\\", "")


def test_a_body_of_unclosed_escaped_quotes_is_a_400(alice):
    # 60 KB on which a depth count that skips strings with a regex backtracks for 15 s of CPU.
    body = '{"prompt": "' + '\\"' * 30_000
    _assert_error(alice.client.post(JOBS, data=body, content_type="application/json"), 400, "PARSE_ERROR")
    assert not GenerationJob.objects.exists()


def test_a_10_mb_json_body_is_a_413_and_nothing_is_created(alice, settings):
    body = '{"prompt": "' + "x" * (10 * 1024 * 1024) + '"}'
    error = _assert_error(alice.client.post(JOBS, data=body, content_type="application/json"), 413, "REQUEST_TOO_LARGE")
    assert error["details"] == {"limit_bytes": settings.API_JSON_MAX_BYTES}
    assert not GenerationJob.objects.exists()


def test_a_json_body_just_over_the_api_limit_is_a_413(alice, settings):
    settings.API_JSON_MAX_BYTES = 2048
    body = '{"prompt": "p", "subject_key": "' + "k" * 2048 + '"}'
    _assert_error(alice.client.post(JOBS, data=body, content_type="application/json"), 413, "REQUEST_TOO_LARGE")
    assert not GenerationJob.objects.exists()


def test_form_fields_of_an_upload_over_djangos_limit_are_a_413(alice, settings):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1024
    upload = SimpleUploadedFile("r.png", png_bytes())
    response = alice.client.post("/api/v1/assets", {"file": upload, "note": "n" * 4096}, format="multipart")
    _assert_error(response, 413, "REQUEST_TOO_LARGE")


@pytest.mark.parametrize("path", [JOBS, f"{JOBS}/estimate", "/api/v1/activity/seen"])
def test_a_form_body_is_a_415_as_the_schema_offers_json_only(alice, path):
    response = alice.client.post(path, {"prompt": "p"}, format="multipart")
    _assert_error(response, 415, "UNSUPPORTED_MEDIA_TYPE")
    assert not GenerationJob.objects.exists()


@pytest.mark.parametrize(
    ("path", "body", "field"),
    [
        (JOBS, {"prompt": 5}, "prompt"),
        (JOBS, {"prompt": "p", "count": "2"}, "count"),
        (JOBS, {"prompt": "p", "params": {"guidance_scale": "7.5"}}, "params.guidance_scale"),
        (JOBS, {"prompt": "p", "inputs": {"source_asset_id": 0}}, "inputs.source_asset_id"),
        (
            f"{JOBS}/estimate",
            {"prompt": "p", "inputs": {"references": [{"asset_id": False}]}},
            "inputs.references.0.asset_id",
        ),
        ("/api/v1/activity/seen", {"ids": [False]}, "ids.0"),
    ],
)
def test_a_value_of_another_json_type_than_documented_is_refused(alice, path, body, field):
    # DRF alone would take "2" for 2, 5 for "5" and false for the UUID 00000000-...
    error = _assert_error(alice.client.post(path, body, format="json"), 400, "VALIDATION_ERROR")
    assert field in error["details"]
    assert not GenerationJob.objects.exists()


def test_a_null_body_is_refused_where_an_object_is_expected(alice):
    response = alice.client.post("/api/v1/activity/seen", data="null", content_type="application/json")
    _assert_error(response, 400, "VALIDATION_ERROR")


def test_an_unknown_api_address_is_a_json_404(alice):
    _assert_error(alice.client.get("/api/v1/no-such-thing"), 404, "NOT_FOUND")
    _assert_error(alice.client.post("/api/v2/jobs", {}, format="json"), 404, "NOT_FOUND")


def test_a_range_beyond_the_end_of_a_file_is_a_416_in_the_error_shape(alice, asset_id):
    response = alice.client.get(f"/api/v1/assets/{asset_id}/content", HTTP_RANGE="bytes=999999-")
    error = _assert_error(response, 416, "RANGE_NOT_SATISFIABLE")
    assert response["Content-Range"] == f"bytes */{error['details']['size']}"


def test_a_file_is_served_to_a_client_that_asks_for_its_type(alice, asset_id):
    response = alice.client.get(f"/api/v1/assets/{asset_id}/content", HTTP_ACCEPT="image/png")
    assert response.status_code == 200
    assert response["Content-Type"] == "image/png"
    _assert_error(alice.client.get(JOBS, HTTP_ACCEPT="text/html"), 406, "NOT_ACCEPTABLE")
