"""The studio form as the model registry draws it, and clips and provider reports on the pages
(Django's test client; the browser tests drive the same pages in Chromium)."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db.models import Q
from django.test import Client
from django.utils import timezone

from credits.services import credits_capture
from generation.models import GeneratedOutput, GenerationJob, JobReference, Look, StudioTab
from generation.services.lifecycle import job_finish
from generation.services.studio import tab_create
from generation.services.submit import JobSpec, job_submit
from tests.factories import png_bytes
from tests.helpers import job_deliver

pytestmark = pytest.mark.django_db

HTMX = {"HX-Request": "true"}


@pytest.fixture
def studio(alice) -> tuple[Client, StudioTab]:
    client = Client()
    client.force_login(alice.user)
    return client, tab_create(user=alice.user, team=alice.team)


@pytest.fixture
def openai_on(settings):
    settings.OPENAI_API_KEY = "sk-test"
    settings.OPENAI_DEFAULT_MODEL = "gpt-image-2"


def select_options(page: str, name: str) -> dict[str, str]:
    """The options of the select named `name`: value -> label."""
    match = re.search(rf'<select name="{name}".*?</select>', page, re.S)
    assert match, f"no {name} select on the page"
    return dict(re.findall(r'<option value="([^"]*)"[^>]*>([^<]*)</option>', match.group(0)))


def selected(page: str, name: str) -> str:
    match = re.search(rf'<select name="{name}".*?</select>', page, re.S)
    assert match, f"no {name} select on the page"
    chosen = re.search(r'<option value="([^"]*)" selected>', match.group(0))
    return chosen.group(1) if chosen else ""


def has_input(page: str, name: str) -> bool:
    return re.search(rf'<(input|select)[^>]* name="{name}"', page) is not None


def test_the_provider_select_offers_only_providers_with_credentials(studio, settings):
    client, tab = studio
    settings.OPENAI_API_KEY = ""
    page = client.get(f"/studio/{tab.id}/").content.decode()
    assert select_options(page, "provider") == {"local": "Local (offline)"}

    settings.OPENAI_API_KEY = "sk-test"
    page = client.get(f"/studio/{tab.id}/").content.decode()
    assert select_options(page, "provider") == {"local": "Local (offline)", "openai": "OpenAI"}
    assert selected(page, "provider") == "local"  # the default provider until another is chosen


def test_the_model_and_its_options_follow_the_chosen_provider(studio, openai_on):
    client, tab = studio
    form = {"prompt": "red tulips", "provider": "openai", "kind": "image", "model": "atelier-sketch-1", "seed": "5"}
    partial = client.post(f"/studio/{tab.id}/form/", form, headers=HTMX).content.decode()
    assert "<html" not in partial
    assert select_options(partial, "model") == {
        "gpt-image-2": "GPT Image 2",
        "gpt-image-2.5-flare": "GPT Image 2.5 Flare",
        "gpt-image-2.5-sunburst": "GPT Image 2.5 Sunburst",
        "gpt-image-1.5": "GPT Image 1.5",
        "gpt-image-1-mini": "GPT Image 1 mini",
    }
    assert selected(partial, "model") == "gpt-image-2"  # the provider's default, not the old model
    assert set(select_options(partial, "background")) == {"auto", "opaque", "transparent"}
    assert select_options(partial, "output_format") == {"png": "PNG", "jpeg": "JPEG", "webp": "WEBP"}
    assert not has_input(partial, "seed") and not has_input(partial, "steps")  # GPT Image takes neither
    assert 'hx-trigger="load"' in partial  # the swapped-in settings ask for the estimate again

    form.update(model="gpt-image-1.5", aspect_ratio="16:9")
    partial = client.post(f"/studio/{tab.id}/form/", form, headers=HTMX).content.decode()
    assert list(select_options(partial, "aspect_ratio")) == ["1:1", "3:2", "2:3"]
    assert selected(partial, "aspect_ratio") == "1:1"

    local = {"prompt": "red tulips", "provider": "local", "kind": "image", "model": "gpt-image-1.5"}
    partial = client.post(f"/studio/{tab.id}/form/", local, headers=HTMX).content.decode()
    assert select_options(partial, "model") == {"atelier-sketch-1": "Atelier Sketch"}
    assert all(has_input(partial, name) for name in ("seed", "guidance_scale", "steps", "strength", "negative_prompt"))
    assert not has_input(partial, "background")
    tab.refresh_from_db()
    assert tab.draft == {}  # drawing the form saves nothing; the estimate that follows does


def test_a_video_kind_offers_the_video_models_their_durations_and_clips(studio, openai_on):
    client, tab = studio
    form = {"prompt": "waves", "provider": "local", "kind": "video", "count": "9"}
    partial = client.post(f"/studio/{tab.id}/form/", form, headers=HTMX).content.decode()
    assert select_options(partial, "model") == {"atelier-motion-1": "Atelier Motion"}
    assert select_options(partial, "duration_seconds") == {"2": "2 s", "3": "3 s", "4": "4 s", "6": "6 s"}
    assert selected(partial, "duration_seconds") == "3"  # the model's default
    assert list(select_options(partial, "count")) == ["1", "2", "3", "4"]  # the model's max_outputs
    assert selected(partial, "count") == "4"
    assert ">Clips" in partial and ">Images" not in partial
    assert list(select_options(partial, "aspect_ratio")) == ["16:9", "9:16", "1:1"]
    assert not has_input(partial, "reference_1") and not has_input(partial, "source_image")

    # OpenAI makes no video: the model select says so and the estimate names the reason.
    openai = {**form, "provider": "openai", "count": "1"}
    partial = client.post(f"/studio/{tab.id}/form/", openai, headers=HTMX).content.decode()
    assert select_options(partial, "model") == {"": "OpenAI makes no video"}
    estimate = client.post(f"/studio/{tab.id}/estimate/", openai, headers=HTMX).content.decode()
    assert "Kind: The openai provider cannot make video jobs." in estimate


def test_an_edit_offers_a_mask_only_for_models_that_take_one(studio, openai_on):
    client, tab = studio
    edit = {"prompt": "p", "kind": "edit"}
    openai = client.post(f"/studio/{tab.id}/form/", {**edit, "provider": "openai"}, headers=HTMX).content.decode()
    assert 'name="mask_image"' in openai and 'name="source_image"' in openai
    local = client.post(f"/studio/{tab.id}/form/", {**edit, "provider": "local"}, headers=HTMX).content.decode()
    assert 'name="mask_image"' not in local and 'name="source_image"' in local


def test_the_estimate_of_a_clip_is_its_price_a_second_times_its_duration(studio):
    client, tab = studio
    form = {"prompt": "waves", "provider": "local", "kind": "video", "count": "2", "duration_seconds": "4"}
    page = client.post(f"/studio/{tab.id}/estimate/", form, headers=HTMX).content.decode()
    assert "8 credits" in page and "for 2 clips of 4 s (4 each: 1 a second)" in page


def test_an_option_the_model_refuses_is_shown_beside_its_field_and_starts_nothing(studio, openai_on):
    client, tab = studio
    clip = {"prompt": "waves", "provider": "local", "kind": "video", "model": "atelier-motion-1", "count": "1"}
    response = client.post(f"/studio/{tab.id}/generate/", {**clip, "duration_seconds": "5"}, follow=True)
    assert response.redirect_chain == [(f"/studio/{tab.id}/", 302)]
    assert "Duration: Atelier Motion makes clips of " in response.content.decode()

    # A page without JavaScript still showed the local model's seed field when OpenAI was chosen.
    stale = {"prompt": "p", "provider": "openai", "kind": "image", "model": "gpt-image-2", "seed": "5"}
    response = client.post(f"/studio/{tab.id}/generate/", stale, follow=True)
    assert response.redirect_chain == [(f"/studio/{tab.id}/", 302)]
    page = response.content.decode()
    assert "Seed: GPT Image 2 does not take this option." in page
    assert not has_input(page, "seed")  # the form is drawn for GPT Image 2 now

    # Without JavaScript, "Estimate" redraws the form for the new provider and names the mismatch.
    response = client.post(f"/studio/{tab.id}/estimate/", {**stale, "model": "atelier-sketch-1"}, follow=True)
    page = response.content.decode()
    assert "Model: Unknown model for openai" in page
    assert selected(page, "model") == "gpt-image-2"
    assert not GenerationJob.objects.exists()


def test_a_provider_without_credentials_is_refused_by_name(studio, settings):
    client, tab = studio
    settings.OPENAI_API_KEY = ""
    response = client.post(
        f"/studio/{tab.id}/generate/", {"prompt": "p", "provider": "openai", "kind": "image"}, follow=True
    )
    assert response.redirect_chain == [(f"/studio/{tab.id}/", 302)]
    assert "Provider: The openai provider is not enabled here; set OPENAI_API_KEY to enable it." in (
        response.content.decode()
    )
    assert not GenerationJob.objects.exists()


def test_an_edit_with_a_mask_from_the_form_and_the_mask_is_kept_on_a_rerender(studio, openai_on):
    client, tab = studio
    edit = {
        "prompt": "make the sky pink", "provider": "openai", "model": "gpt-image-2", "kind": "edit", "count": "1",
        "source_image": SimpleUploadedFile("s.png", png_bytes(64, 64)),
        "mask_image": SimpleUploadedFile("m.png", png_bytes(64, 64)),
        "background": "transparent", "output_format": "jpeg",  # a combination GPT Image refuses
    }  # fmt: skip
    response = client.post(f"/studio/{tab.id}/generate/", edit, follow=True)
    assert response.redirect_chain == [(f"/studio/{tab.id}/", 302)]
    page = response.content.decode()
    assert "Format: A transparent background needs the png or webp format." in page
    tab.refresh_from_db()
    mask_id = tab.draft["inputs"]["mask_asset_id"]
    assert f'name="mask_image_asset" value="{mask_id}"' in page  # not uploaded again

    fixed = {key: value for key, value in edit.items() if key not in ("source_image", "mask_image")}
    fixed.update(
        output_format="png",
        source_image_asset=tab.draft["inputs"]["source_asset_id"],
        mask_image_asset=mask_id,
    )
    assert client.post(f"/studio/{tab.id}/generate/", fixed).status_code == 302
    job = GenerationJob.objects.get(tab=tab)
    mask = job.reference_links.get(role=JobReference.Role.MASK)
    assert str(mask.asset_id) == mask_id and job.params["background"] == "transparent"


def _clip_job(person, tab: StudioTab | None = None, **changes) -> GenerationJob:
    spec = JobSpec(
        prompt="a slow pan over dunes",
        kind="video",
        count=2,
        params={"duration_seconds": 3},
        tab_id=tab.id if tab else None,
    )
    job = job_submit(team=person.team, user=person.user, spec=spec).job
    GenerationJob.objects.filter(id=job.id).update(**changes)
    job.refresh_from_db()
    return job


def _deliver_clip(job: GenerationJob, index: int, report: dict | None = None) -> GeneratedOutput:
    output = GeneratedOutput.objects.create(
        job=job, index=index, file=f"clips/{job.id}-{index}.mp4", poster=f"clips/{job.id}-{index}.png",
        mime="video/mp4", width=640, height=360, bytes=52_000, sha256="0" * 64, provider_report=report or {},
    )  # fmt: skip
    credits_capture(team_id=job.team_id, job_id=job.id, output_index=index, amount=job.credits_per_output)
    GenerationJob.objects.filter(id=job.id).update(completed_outputs=index + 1)
    return output


def test_a_running_clip_shows_how_long_it_has_run_and_the_providers_own_progress(alice, studio):
    client, tab = studio
    job = _clip_job(
        alice, tab, status="running", lease_owner="w", started_at=timezone.now() - timedelta(seconds=75),
        provider_operation={"index": 0, "name": "operations/1", "started_at": "2026-01-01T00:00:00+00:00"},
    )  # fmt: skip
    url = f"/studio/{tab.id}/progress/"
    first = client.get(url)
    page = first.content.decode()
    assert re.search(r'data-started-at="\d+">1:1[5-6]</span>', page)
    assert "0 of 2 clips" in page
    assert 'data-testid="provider-progress"' not in page  # nothing reported yet: no number made up
    assert client.get(url, headers={"If-None-Match": first["ETag"]}).status_code == 304  # the time ticks in the page

    GenerationJob.objects.filter(id=job.id).update(provider_operation={**job.provider_operation, "progress": 40})
    polled = client.get(url, headers={"If-None-Match": first["ETag"]})
    assert polled.status_code == 200
    assert "Clip 1: 40% done, as the provider reports it." in polled.content.decode()


def test_a_finished_clip_plays_in_the_studio_the_job_page_and_the_collection(alice, studio):
    client, tab = studio
    job = _clip_job(alice, tab)
    report = {
        "model_version": "veo-3.0-generate-001", "operation": "projects/p/operations/7",
        "usage": {"input_tokens": 12, "output_tokens": 0}, "cost": "0.40 USD", "frames": 72,
    }  # fmt: skip
    _deliver_clip(job, 0, report)
    first = GeneratedOutput.objects.get(job=job, index=0)
    Look.objects.create(team=alice.team, output=first, job=job)
    src, poster = f"/api/v1/jobs/{job.id}/outputs/1", f"/api/v1/jobs/{job.id}/outputs/1/poster"

    studio_page = client.get(f"/studio/{tab.id}/").content.decode()
    video = re.search(r"<video [^>]*>", studio_page, re.S).group(0)
    for attribute in ("controls", 'preload="metadata"', "playsinline", f'poster="{poster}"', f'src="{src}"'):
        assert attribute in video
    assert f'<a href="{src}" download data-testid="clip-download">Download clip 1</a>' in studio_page

    job_page = client.get(f"/jobs/{job.id}/").content.decode()
    assert f'src="{src}"' in job_page
    assert "3 credits a clip · held 6 · captured 3 · released 0" in " ".join(job_page.split())  # 1 a second, 3 s
    assert "3 credits captured" in job_page
    for label, value in [
        ("Model version", "veo-3.0-generate-001"), ("Usage · input_tokens", "12"), ("Cost", "0.40 USD"),
        ("Operation", "projects/p/operations/7"), ("Frames", "72"),
    ]:  # fmt: skip
        assert f"<dt>{label}</dt><dd>{value}</dd>" in job_page

    gallery = client.get("/collection/").content.decode()
    assert f'<img src="{poster}"' in gallery and "play-badge" in gallery
    look_page = client.get(f"/collection/{first.look.id}/").content.decode()
    assert f'src="{src}"' in look_page and f'poster="{poster}"' in look_page


def test_the_return_notice_counts_clips_apart_from_images(alice, studio):
    client, _ = studio
    clip_job = _clip_job(alice)
    _deliver_clip(clip_job, 0)
    image_job = job_submit(team=alice.team, user=alice.user, spec=JobSpec(prompt="stills", count=2)).job
    job_deliver(job=image_job, indexes=[0, 1])
    for job in (clip_job, image_job):
        assert job_finish(job_id=job.id, fence=Q(), status=GenerationJob.Status.SUCCEEDED)
    client.get("/collection/")  # a page's first live poll tells what finished while away
    arrival = client.get("/activity/", {"arrival": "1"}).content.decode()
    assert "2 generations finished while you were away (2 images, 1 clip)" in arrival
