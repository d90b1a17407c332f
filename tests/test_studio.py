"""The studio's pieces without a browser: the style vocabulary ("none" adds nothing), the one map
from the API's field paths to the form's fields, the submit outcome, and post/redirect/get."""

from __future__ import annotations

import pytest
import yaml
from django.test import Client

from generation.models import GenerationJob
from generation.pages.studio_form import form_errors, form_field_for
from generation.params import STYLES, style_addition
from generation.prompts import build_optimized_prompt
from generation.services.studio import tab_create
from generation.services.submit import JobSpec, SubmitOutcome, job_submit

pytestmark = pytest.mark.django_db


@pytest.fixture
def studio(alice) -> tuple[Client, int]:
    client = Client()
    client.force_login(alice.user)
    return client, tab_create(user=alice.user, team=alice.team).id


def test_the_style_none_sends_the_prompt_as_written():
    prompt = build_optimized_prompt(prompt="a watercolor  fox.", kind="image", style="none", quality="high")
    assert prompt == "a watercolor fox."
    assert style_addition("none") == ""
    assert build_optimized_prompt(prompt="a fox", kind="edit", style="none", quality=None) == (
        "Edit the source image, a fox"
    )


def test_the_other_styles_add_their_words_and_the_quality_cue():
    assert build_optimized_prompt(prompt="a fox.", kind="image", style="minimal", quality="draft") == (
        f"a fox, {STYLES['minimal']}, quick draft"
    )


def test_the_api_takes_style_none_and_its_schema_lists_it(alice, anonymous):
    response = alice.client.post(
        "/api/v1/jobs", {"prompt": "a watercolor fox", "params": {"style": "none"}}, format="json"
    )
    assert response.status_code == 202, response.content
    assert response.json()["optimized_prompt"] == "a watercolor fox"
    schemas = yaml.safe_load(anonymous.get("/api/schema/").content)["components"]["schemas"]
    assert schemas["StyleEnum"]["enum"] == ["none", "realistic", "artistic", "minimal"]
    style = schemas["ParamsRequest"]["properties"]["style"]
    assert style["allOf"] == [{"$ref": "#/components/schemas/StyleEnum"}] and style["default"] == "realistic"


def test_a_job_body_without_a_style_keeps_the_api_default(alice):
    response = alice.client.post("/api/v1/jobs", {"prompt": "chrome tips"}, format="json")
    assert response.json()["params"]["style"] == "realistic"  # unchanged for API clients


def test_a_new_studio_draft_starts_at_style_none_and_a_post_keeps_the_prompt(studio):
    client, tab_id = studio
    page = client.get(f"/studio/{tab_id}/").content.decode()
    assert '<option value="none" selected>' in page
    assert "Adds nothing: your prompt is sent as written." in page
    response = client.post(f"/studio/{tab_id}/generate/", {"prompt": "a watercolor fox", "style": "none"})
    assert response.status_code == 302
    assert GenerationJob.objects.get().optimized_prompt == "a watercolor fox"


def test_old_jobs_with_the_earlier_styles_stay_valid(alice):
    for style in ("realistic", "artistic", "minimal"):
        spec = JobSpec(prompt=f"a {style} fox", params={"style": style})
        assert job_submit(team=alice.team, user=alice.user, spec=spec).created


@pytest.mark.parametrize(
    ("path", "field"),
    [
        ("prompt", "prompt"),
        ("params.seed", "seed"),
        ("inputs.references.0.asset_id", "reference_1"),
        ("inputs.references.2.weight", "reference_3"),
        ("inputs.references", "references"),
        ("inputs.source_asset_id", "source_image"),
        ("inputs.mask_asset_id", "mask_image"),
        ("inputs.sketch.asset_id", "sketch_image"),
        ("inputs.sketch.weight", "sketch_image"),
    ],
)
def test_one_map_from_api_field_paths_to_form_fields(path, field):
    assert form_field_for(path) == field


def test_form_errors_gather_the_messages_of_one_field():
    errors = {"inputs.sketch.asset_id": ["No uploaded image."], "inputs.sketch.weight": ["Too heavy."]}
    assert form_errors(errors) == {"sketch_image": ["No uploaded image.", "Too heavy."]}


def test_the_submit_result_says_created_replayed_or_active_subject(alice):
    spec = JobSpec(prompt="one", subject_key="fox-7")
    first = job_submit(team=alice.team, user=alice.user, spec=spec, idempotency_key="k1")
    again = job_submit(team=alice.team, user=alice.user, spec=spec, idempotency_key="k1")
    other = job_submit(team=alice.team, user=alice.user, spec=spec, idempotency_key="k2")
    assert [first.outcome, again.outcome, other.outcome] == [
        SubmitOutcome.CREATED,
        SubmitOutcome.REPLAYED,
        SubmitOutcome.ACTIVE_SUBJECT,
    ]
    assert first.job.id == again.job.id == other.job.id


def test_every_studio_post_without_htmx_ends_in_a_redirect(studio):
    client, tab_id = studio
    form = {"prompt": "a fox", "seed": "-1"}
    for action in ("estimate", "form", "generate"):
        response = client.post(f"/studio/{tab_id}/{action}/", form)
        assert (action, response.status_code, response["Location"]) == (action, 302, f"/studio/{tab_id}/")
    assert not GenerationJob.objects.exists()
