"""Remix and "More like this": the look itself attached, a new seed, one image (or a few
variations at once), and every job linked to the image it comes from."""

from __future__ import annotations

import dataclasses
import hashlib

import pytest
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.utils import timezone

from credits.models import CreditAccount, LedgerEntry
from credits.services import credits_grant
from generation.models import GeneratedOutput, GenerationJob, InputAsset, Look, RemixMode, StudioTab
from generation.providers.catalog import PROVIDERS
from generation.services.job_body import JobCreateSerializer
from generation.services.remix import remix_plan, remix_title
from generation.services.retry import job_retry
from generation.services.submit import JobSpec, job_submit
from tests.factories import GenerationJobFactory, UserFactory, png_bytes
from tests.helpers import job_fail, signed_in

pytestmark = pytest.mark.django_db

LOOK_SEED = 4242


def look_of(
    person, *, prompt: str = "a watercolor fox in the snow", content: bytes | None = None, **job_fields
) -> Look:  # type: ignore[no-untyped-def]
    """A look of `person`'s team whose image is really stored, as a worker leaves one."""
    content = content if content is not None else png_bytes(40, 30, (20, 140, 90))
    fields = {
        "params": {"style": "artistic", "quality": "standard", "aspect_ratio": "4:3", "seed": LOOK_SEED},
        **job_fields,
    }
    job = GenerationJobFactory(
        team=person.team,
        created_by=person.user,
        prompt=prompt,
        status="succeeded",
        finished_at=timezone.now(),
        **fields,
    )
    mime = "video/mp4" if job.kind == GenerationJob.Kind.VIDEO else "image/png"
    name = default_storage.save(f"teams/{person.team.id}/jobs/{job.id}/image-1.png", ContentFile(content))
    output = GeneratedOutput.objects.create(
        job=job,
        index=0,
        file=name,
        mime=mime,
        width=40,
        height=30,
        bytes=len(content),
        sha256=hashlib.sha256(content).hexdigest(),
    )
    return Look.objects.create(team=person.team, output=output, job=job)


def stored_bytes(asset: InputAsset) -> bytes:
    with default_storage.open(asset.file.name, "rb") as handle:
        return handle.read()


def opened_tab(response) -> StudioTab:  # type: ignore[no-untyped-def]
    assert response.status_code == 302, response.content[:500]
    return StudioTab.objects.get(id=int(response["Location"].rstrip("/").rsplit("/", 1)[1]))


def submitted_from(tab: StudioTab, person) -> GenerationJob:  # type: ignore[no-untyped-def]
    """The tab's draft submitted as its Generate button does: the draft is the job's body,
    validated by the same serializer, in the tab."""
    serializer = JobCreateSerializer(data={**tab.draft, "tab": tab.id})
    assert serializer.is_valid(), serializer.errors
    return job_submit(team=person.team, user=person.user, spec=serializer.to_spec()).job


# -- remix ----------------------------------------------------------------------------------------


def test_remix_opens_a_tab_with_the_look_as_reference_one_image_and_no_seed(alice):
    look = look_of(alice)
    browser = signed_in(alice)

    tab = opened_tab(browser.post(f"/collection/{look.id}/remix/"))

    draft = tab.draft
    assert draft["prompt"] == "a watercolor fox in the snow"
    assert draft["kind"] == "image" and draft["provider"] == "local" and draft["model"] == "atelier-sketch-1"
    assert draft["count"] == 1
    assert draft["params"] == {"style": "artistic", "quality": "standard", "aspect_ratio": "4:3"}  # no seed
    [reference] = draft["inputs"]["references"]
    asset = InputAsset.objects.get(id=reference["asset_id"], team=alice.team)
    assert stored_bytes(asset) == stored_bytes_of(look)
    assert tab.remix_of == look.output and tab.remix_mode == RemixMode.REFERENCE
    page = browser.get(f"/studio/{tab.id}/").content.decode()
    assert f'value="{asset.id}"' in page  # the form keeps the look as its first reference
    assert 'name="seed"' in page and f'value="{LOOK_SEED}"' not in page


def stored_bytes_of(look: Look) -> bytes:
    with default_storage.open(look.output.file.name, "rb") as handle:
        return handle.read()


def test_edit_this_image_attaches_the_look_as_the_source_of_an_edit(alice):
    look = look_of(alice)

    tab = opened_tab(signed_in(alice).post(f"/collection/{look.id}/remix/", {"attach": "source"}))

    assert tab.draft["kind"] == "edit"
    asset = InputAsset.objects.get(id=tab.draft["inputs"]["source_asset_id"])
    assert stored_bytes(asset) == stored_bytes_of(look)
    assert "references" not in tab.draft["inputs"]
    assert tab.title == "Edit: a watercolor fox in the snow"
    assert tab.remix_mode == RemixMode.SOURCE


def test_the_submitted_remix_uses_the_looks_bytes_a_new_seed_and_links_to_the_look(alice):
    look = look_of(alice)
    tab = opened_tab(signed_in(alice).post(f"/collection/{look.id}/remix/"))

    job = submitted_from(tab, alice)

    assert job.total_outputs == 1
    assert job.params["seed"] != LOOK_SEED
    [link] = job.reference_links.all()
    assert link.role == "reference" and stored_bytes(link.asset) == stored_bytes_of(look)
    assert job.remix_of == look.output and job.remix_mode == RemixMode.REFERENCE
    assert job.tab == tab


def test_a_job_of_a_remix_tab_without_the_look_on_its_form_is_no_remix(alice):
    look = look_of(alice)
    tab = opened_tab(signed_in(alice).post(f"/collection/{look.id}/remix/"))
    first = submitted_from(tab, alice)
    # The person takes the look off the form and writes a new prompt in the same tab.
    tab.draft = {key: value for key, value in tab.draft.items() if key != "inputs"} | {"prompt": "a new idea"}
    tab.save(update_fields=["draft"])

    second = submitted_from(tab, alice)

    assert first.remix_of == look.output
    assert second.remix_of is None and second.remix_mode == ""
    assert list(GenerationJob.objects.filter(remix_of=look.output)) == [first]


def test_remixing_a_look_again_reuses_its_copy_and_counts_it_once(alice, settings):
    look = look_of(alice)
    browser = signed_in(alice)
    first = opened_tab(browser.post(f"/collection/{look.id}/remix/"))
    settings.QUOTA_UPLOADS = 1  # the team holds one upload now: the copy
    second = opened_tab(browser.post(f"/collection/{look.id}/remix/", {"attach": "source"}))

    assert InputAsset.objects.filter(team=alice.team).count() == 1
    assert first.draft["inputs"]["references"][0]["asset_id"] == second.draft["inputs"]["source_asset_id"]


def test_remix_with_the_upload_quota_full_says_so_and_opens_no_tab(alice, settings):
    look = look_of(alice)
    settings.QUOTA_UPLOADS = 1
    InputAsset.objects.create(
        team=alice.team, file="teams/x/inputs/other.png", mime="image/png", width=1, height=1, bytes=1, sha256="1" * 64
    )
    tabs = StudioTab.objects.filter(user=alice.user).count()

    page = signed_in(alice).post(f"/collection/{look.id}/remix/", follow=True).content.decode()

    assert "quota of 1 uploaded images is reached" in page
    assert StudioTab.objects.filter(user=alice.user).count() == tabs


@pytest.mark.parametrize(
    ("attach", "told"),
    [
        ("reference", "Imagen 4 takes no reference images, nor does any other Vertex AI (Imagen, Veo) model"),
        ("source", "Imagen 4 does not edit images, nor does any other Vertex AI (Imagen, Veo) model"),
    ],
)
def test_a_model_that_cannot_take_the_look_opens_its_settings_and_says_why(alice, attach, told):
    look = look_of(alice, provider="vertex", model="imagen-4.0-generate-001")
    browser = signed_in(alice)

    response = browser.post(f"/collection/{look.id}/remix/", {"attach": attach})

    tab = opened_tab(response)
    assert "inputs" not in tab.draft
    assert tab.draft["kind"] == "image" and tab.draft["model"] == "imagen-4.0-generate-001"
    assert told in browser.get(response["Location"]).content.decode()
    assert not InputAsset.objects.filter(team=alice.team).exists()


def test_a_model_that_takes_no_references_hands_the_remix_to_one_of_its_provider_that_does(alice, monkeypatch):
    """A provider whose look's model takes no reference but another of its models does."""
    local = PROVIDERS["local"]
    blind = dataclasses.replace(local.models[0], id="blind-1", label="Blind", max_references=0, max_outputs=2)
    monkeypatch.setitem(PROVIDERS, "local", dataclasses.replace(local, models=(blind, *local.models)))
    look = look_of(alice, model="blind-1", params={"style": "artistic", "quality": "standard", "steps": 30})

    plan = remix_plan(look=look, mode=RemixMode.VARIATIONS)
    response = signed_in(alice).post(f"/collection/{look.id}/remix/", follow=True)

    assert plan.model is not None and plan.model.id == "atelier-sketch-1" and plan.attach and plan.count == 4
    tab = StudioTab.objects.get(remix_of=look.output)
    assert tab.draft["model"] == "atelier-sketch-1" and tab.draft["params"]["steps"] == 30
    assert len(tab.draft["inputs"]["references"]) == 1
    assert "Blind takes no reference images: Atelier Sketch makes this one." in response.content.decode()


def test_more_like_this_of_a_provider_switched_off_since_says_so_and_makes_nothing(alice):
    look = look_of(alice, provider="vertex", model="imagen-4.0-generate-001")

    page = signed_in(alice).post(f"/collection/{look.id}/variations/", follow=True).content.decode()

    assert "The vertex provider is not enabled here" in page
    assert GenerationJob.objects.filter(team=alice.team).count() == 1  # the look's own job only
    assert not StudioTab.objects.filter(remix_of=look.output).exists()


def test_a_clip_is_remixed_from_its_settings(alice):
    look = look_of(
        alice,
        kind="video",
        model="atelier-motion-1",
        params={"style": "artistic", "quality": "standard", "aspect_ratio": "16:9", "duration_seconds": 3, "seed": 9},
    )

    response = signed_in(alice).post(f"/collection/{look.id}/remix/")

    tab = opened_tab(response)
    assert tab.draft["kind"] == "video" and "inputs" not in tab.draft
    assert tab.draft["params"]["duration_seconds"] == 3 and "seed" not in tab.draft["params"]


def test_the_tab_title_is_cut_at_a_word_boundary_with_an_ellipsis():
    assert remix_title(RemixMode.REFERENCE, "a watercolor fox in the snowy forest at dawn") == (
        "Remix: a watercolor fox in the snowy forest at…"
    )
    assert remix_title(RemixMode.REFERENCE, "a watercolor fox in a wood of tall birches") == (
        "Remix: a watercolor fox in a wood of tall…"
    )
    assert remix_title(RemixMode.REFERENCE, "short and sweet") == "Remix: short and sweet"
    assert remix_title(RemixMode.VARIATIONS, "x" * 60) == f"Variations: {'x' * 40}…"  # one long word


def test_the_remix_tab_title_never_cuts_a_word(alice):
    look = look_of(alice, prompt="a watercolor fox in the snowy forest at dawn, soft light")

    tab = opened_tab(signed_in(alice).post(f"/collection/{look.id}/remix/"))

    assert tab.title == "Remix: a watercolor fox in the snowy forest at…"


# -- more like this ------------------------------------------------------------------------------


def test_the_look_page_says_what_more_like_this_makes_and_costs(alice):
    look = look_of(alice)

    page = signed_in(alice).get(f"/collection/{look.id}/").content.decode()

    assert "More like this · 4 images · 4 credits" in page
    assert "Remix with this as reference" in page and "Edit this image" in page


def test_more_like_this_submits_one_job_with_the_look_as_reference_and_holds_credits_once(alice):
    look = look_of(alice)
    before = CreditAccount.objects.get(team=alice.team).available

    tab = opened_tab(signed_in(alice).post(f"/collection/{look.id}/variations/", {"submit_token": "a" * 32}))

    [job] = GenerationJob.objects.filter(team=alice.team).exclude(id=look.job_id)
    assert job.tab == tab and job.total_outputs == 4
    assert job.params["seed"] != LOOK_SEED
    [link] = job.reference_links.all()
    assert link.role == "reference" and stored_bytes(link.asset) == stored_bytes_of(look)
    assert job.remix_of == look.output and job.remix_mode == RemixMode.VARIATIONS
    holds = LedgerEntry.objects.filter(job=job, kind=LedgerEntry.Kind.HOLD)
    assert [entry.held_delta for entry in holds] == [4]
    assert CreditAccount.objects.get(team=alice.team).available == before - 4
    assert tab.title == "Variations: a watercolor fox in the snow"


def test_more_like_this_pressed_twice_starts_one_job(alice):
    look = look_of(alice)
    browser = signed_in(alice)

    first = opened_tab(browser.post(f"/collection/{look.id}/variations/", {"submit_token": "b" * 32}))
    second = opened_tab(browser.post(f"/collection/{look.id}/variations/", {"submit_token": "b" * 32}))

    assert first == second
    assert GenerationJob.objects.filter(remix_of=look.output).count() == 1


def test_more_like_this_without_enough_credits_charges_nothing_and_says_why():
    user = UserFactory(email="short@example.com")
    team = user.personal_team
    credits_grant(team=team, amount=2, idempotency_key="short-grant", actor=None, memo="test")
    person = type("Person", (), {"user": user, "team": team})
    look = look_of(person)
    tabs = StudioTab.objects.filter(user=user).count()

    response = signed_in(person).post(f"/collection/{look.id}/variations/", follow=True)

    page = response.content.decode()
    assert response.redirect_chain == [(f"/collection/{look.id}/", 302)]
    assert "More like this needs 4 credits and your team has 2: nothing was charged." in page
    assert GenerationJob.objects.filter(team=team).count() == 1  # the look's own job only
    assert StudioTab.objects.filter(user=user).count() == tabs  # no tab left behind
    account = CreditAccount.objects.get(team=team)
    assert (account.available, account.held) == (2, 0)
    assert not LedgerEntry.objects.filter(account=account, kind=LedgerEntry.Kind.HOLD).exists()


def test_more_like_this_has_the_submit_rate_limit(alice, settings):
    look = look_of(alice)
    settings.RATE_LIMIT_SUBMIT = "1/min"
    settings.RATE_LIMIT_USER_FACTOR = 1
    browser = signed_in(alice)
    assert browser.post(f"/collection/{look.id}/variations/").status_code == 302

    refused = browser.post(f"/collection/{look.id}/variations/")

    assert refused.status_code == 429 and int(refused["Retry-After"]) >= 1
    assert "Too many generations in a short time" in refused.content.decode()
    assert GenerationJob.objects.filter(remix_of=look.output).count() == 1


def test_another_teams_look_is_404_for_remix_and_variations(alice, charlie):
    look = look_of(alice)
    browser = signed_in(charlie)

    assert browser.post(f"/collection/{look.id}/remix/").status_code == 404
    assert browser.post(f"/collection/{look.id}/remix/", {"attach": "source"}).status_code == 404
    assert browser.post(f"/collection/{look.id}/variations/").status_code == 404
    assert not StudioTab.objects.filter(user=charlie.user).exclude(remix_of=None).exists()
    assert GenerationJob.objects.filter(team=charlie.team).count() == 0
    assert not InputAsset.objects.filter(team=charlie.team).exists()


# -- lineage -------------------------------------------------------------------------------------


def test_the_job_page_links_a_remix_to_its_parent_and_the_parent_to_its_remixes(alice):
    look = look_of(alice)
    browser = signed_in(alice)
    tab = opened_tab(browser.post(f"/collection/{look.id}/remix/"))
    remix = submitted_from(tab, alice)

    child_page = browser.get(f"/jobs/{remix.id}/").content.decode()
    parent_page = browser.get(f"/jobs/{look.job_id}/").content.decode()

    assert f'href="/jobs/{look.job_id}/" data-testid="remix-parent-link"' in child_page
    assert "Remix of image 1 of" in child_page
    assert f'href="/jobs/{remix.id}/" data-testid="remix-child-link"' in parent_page
    assert "(remix of image 1, queued)" in parent_page


def test_the_job_page_links_a_retry_to_its_parent_and_back(alice):
    failed = job_submit(team=alice.team, user=alice.user, spec=JobSpec(prompt="a fox that failed", count=2)).job
    job_fail(job=failed)
    retry, _ = job_retry(job=failed, user=alice.user)
    browser = signed_in(alice)

    assert f'href="/jobs/{failed.id}/" data-testid="parent-link"' in browser.get(f"/jobs/{retry.id}/").content.decode()
    assert f'href="/jobs/{retry.id}/" data-testid="child-link"' in browser.get(f"/jobs/{failed.id}/").content.decode()


def test_a_deleted_look_keeps_the_link_of_its_remixes(alice):
    look = look_of(alice)
    browser = signed_in(alice)
    remix = submitted_from(opened_tab(browser.post(f"/collection/{look.id}/remix/")), alice)
    output = look.output

    browser.post(f"/collection/{look.id}/delete/")

    remix.refresh_from_db()
    assert remix.remix_of == output
    assert "remix-parent-link" in browser.get(f"/jobs/{remix.id}/").content.decode()
