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
