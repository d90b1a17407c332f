"""Issue 9's abuse findings on the API and the studio, replayed: bursts of submits, estimates and
uploads from one key or many keys of one person; more active jobs, tabs and draft bytes than a
team may hold; a queue position that told every team the platform's load.

No worker runs here, so submitted jobs stay queued (active) for the whole test.
"""

from __future__ import annotations

import threading

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import connection
from django.test import Client
from django.utils import timezone
from playwright.sync_api import expect
from rest_framework.test import APIClient

from accounts.models import User
from accounts.quotas import QuotaExceeded
from accounts.services import api_key_create
from config.env import env_rate
from credits.models import CreditAccount
from generation.models import GeneratedOutput, GenerationJob, InputAsset, Look, StudioTab
from generation.services.lifecycle import job_cancel
from generation.services.studio import tab_create
from generation.services.submit import JobSpec, job_submit
from tests.browser import DESKTOP, SLOW, PolicyWatch, log_in
from tests.factories import GenerationJobFactory, png_bytes
from tests.helpers import job_fail, signed_in

pytestmark = pytest.mark.django_db

JOBS = "/api/v1/jobs"
TEN_MB_PROMPT = "x" * (10 * 1024 * 1024)


def submit(client, **body):
    body.setdefault("prompt", "a gold and pink nail design")
    return client.post(JOBS, body, format="json")


def balances(person) -> tuple[int, int, int]:
    """What a refused request must leave as it was: the team's credits and its number of jobs."""
    account = CreditAccount.objects.get(team=person.team)
    return account.available, account.held, GenerationJob.objects.filter(team=person.team).count()


def assert_throttled(response) -> int:
    """A 429 in the API's error shape whose Retry-After and details agree; returns the wait."""
    assert response.status_code == 429, response.content
    error = response.json()["error"]
    assert error["code"] == "THROTTLED"
    wait = error["details"]["wait"]
    assert isinstance(wait, int) and 1 <= wait <= 60
    assert response["Retry-After"] == str(wait)
    assert f"{wait} second" in error["message"]
    return wait


def api_client_for(person, name: str):
    """Another API key of the same person, with its own client."""
    issued = api_key_create(team=person.team, created_by=person.user, name=name)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {issued.raw_key}")
    return client


# --- Rate limits -------------------------------------------------------------------------------


def test_a_burst_of_submits_from_one_key_gets_429_with_retry_after_and_holds_nothing(alice, settings):
    settings.RATE_LIMIT_SUBMIT = "3/min"
    accepted = [submit(alice.client, prompt=f"burst {n}") for n in range(3)]
    assert [response.status_code for response in accepted] == [202, 202, 202]
    before = balances(alice)

    refused = [submit(alice.client, prompt=f"burst {n}") for n in range(3, 10)]

    for response in refused:
        assert_throttled(response)
    assert balances(alice) == before  # no job, no hold for any refused submit
    # Reading is its own scope: the list still answers while submits are refused.
    assert alice.client.get(JOBS).status_code == 200


def test_retries_count_against_the_submit_limit(alice, settings):
    settings.RATE_LIMIT_SUBMIT = "1/min"
    job_id = submit(alice.client).json()["id"]
    job_fail(job=GenerationJob.objects.get(id=job_id))
    before = balances(alice)

    assert_throttled(alice.client.post(f"{JOBS}/{job_id}/retry"))
    assert balances(alice) == before


def test_many_keys_of_one_person_share_the_per_person_limit(alice, bob, settings):
    settings.RATE_LIMIT_SUBMIT = "2/min"
    settings.RATE_LIMIT_USER_FACTOR = 2  # one person: 4 a minute across all their keys
    second_key, third_key = api_client_for(alice, "second"), api_client_for(alice, "third")
    assert [submit(alice.client).status_code for _ in range(2)] == [202, 202]
    assert [submit(second_key).status_code for _ in range(2)] == [202, 202]

    assert_throttled(submit(third_key))  # a fresh key of the same person: her limit is spent
    assert GenerationJob.objects.filter(created_by=alice.user).count() == 4
    # Another person of the same team has limits of their own.
    assert submit(bob.client).status_code == 202


def test_the_browser_session_counts_toward_the_person_limit_too(alice, settings):
    settings.RATE_LIMIT_SUBMIT = "1/min"
    settings.RATE_LIMIT_USER_FACTOR = 1
    assert submit(alice.client).status_code == 202
    browser = signed_in(alice)
    browser_submit = browser.post(JOBS, {"prompt": "from the browser"}, content_type="application/json")
    assert_throttled(browser_submit)


def test_estimates_have_their_own_limit(alice, settings):
    settings.RATE_LIMIT_ESTIMATE = "2/min"
    estimates = [alice.client.post(f"{JOBS}/estimate", {"prompt": "a"}, format="json") for _ in range(3)]
    assert [response.status_code for response in estimates[:2]] == [200, 200]
    assert_throttled(estimates[2])
    assert submit(alice.client).status_code == 202  # submits are not estimates


def test_uploads_have_their_own_limit_and_a_refused_one_stores_nothing(alice, settings):
    settings.RATE_LIMIT_UPLOAD = "1/min"

    def upload():
        image = SimpleUploadedFile("ref.png", png_bytes(), content_type="image/png")
        return alice.client.post("/api/v1/assets", {"file": image}, format="multipart")

    assert upload().status_code == 201
    assert_throttled(upload())
    assert InputAsset.objects.filter(team=alice.team).count() == 1


def test_every_other_request_has_the_general_api_limit(alice, settings):
    settings.RATE_LIMIT_API = "2/min"
    assert [alice.client.get(JOBS).status_code for _ in range(2)] == [200, 200]
    assert_throttled(alice.client.get("/api/v1/looks"))
    assert submit(alice.client).status_code == 202  # a submit is counted as a submit


def test_the_studio_generate_button_has_the_submit_limit(alice, settings):
    settings.RATE_LIMIT_SUBMIT = "1/min"
    browser = signed_in(alice)
    tab = tab_create(user=alice.user, team=alice.team)
    form = {"prompt": "studio burst", "count": "1", "kind": "image"}
    assert browser.post(f"/studio/{tab.id}/generate/", form).status_code == 302
    before = balances(alice)

    refused = browser.post(f"/studio/{tab.id}/generate/", {**form, "prompt": "studio burst again"}, follow=True)

    assert refused.redirect_chain == [(f"/studio/{tab.id}/", 302)]  # a reload sends nothing again
    assert "Too many generations in a short time; try again in" in refused.content.decode()
    assert balances(alice) == before


def test_each_file_sent_with_generate_counts_against_the_upload_limit(alice, settings):
    settings.RATE_LIMIT_UPLOAD = "2/min"
    browser = signed_in(alice)
    tab = tab_create(user=alice.user, team=alice.team, draft={"prompt": "my saved design"})

    def image(name: str, shade: int) -> SimpleUploadedFile:
        return SimpleUploadedFile(name, png_bytes(40, 30, colour=(shade, 9, 9)), content_type="image/png")

    # One press, three files (source and two references): three uploads, over a limit of two.
    refused = browser.post(
        f"/studio/{tab.id}/generate/",
        {
            "prompt": "an edit with references",
            "kind": "edit",
            "source_image": image("source.png", 1),
            "reference_1": image("one.png", 2),
            "reference_2": image("two.png", 3),
        },
        follow=True,
    )

    assert refused.redirect_chain == [(f"/studio/{tab.id}/", 302)]
    assert "Too many uploads in a short time; try again in" in refused.content.decode()
    assert not InputAsset.objects.filter(team=alice.team).exists()  # not one of the three
    assert not GenerationJob.objects.filter(team=alice.team).exists()
    tab.refresh_from_db()
    assert tab.draft == {"prompt": "my saved design"}  # the refused press saved nothing


def test_the_studio_estimate_and_form_settings_have_the_estimate_limit(alice, settings):
    settings.RATE_LIMIT_ESTIMATE = "1/min"
    browser = signed_in(alice)
    tab = tab_create(user=alice.user, team=alice.team, draft={"prompt": "my saved design"})
    estimate = f"/studio/{tab.id}/estimate/"
    assert browser.post(estimate, {"prompt": "first"}, HTTP_HX_REQUEST="true").status_code == 200

    refused = browser.post(estimate, {"prompt": "second"}, HTTP_HX_REQUEST="true")

    assert refused.status_code == 429
    assert int(refused["Retry-After"]) >= 1
    assert "Too many requests in a short time; try again in" in refused.content.decode()
    assert refused["HX-Retarget"] == "#estimate"  # shown in the estimate panel (app.js swaps it)
    tab.refresh_from_db()
    assert tab.draft == {"prompt": "first"}  # the refused estimate saved no draft
    # Without htmx: the tab, drawn with the message.
    page = browser.post(f"/studio/{tab.id}/form/", {"prompt": "third", "provider": "local"})
    assert page.status_code == 429
    assert int(page["Retry-After"]) >= 1
    assert "Too many requests in a short time" in page.content.decode()
    assert 'id="estimate"' in page.content.decode()  # the studio tab itself
    tab.refresh_from_db()
    assert tab.draft == {"prompt": "first"}


def test_opening_renaming_closing_tabs_and_remixing_have_the_api_limit(alice, settings):
    look = _look(alice)
    tab = tab_create(user=alice.user, team=alice.team, title="Kept")
    settings.RATE_LIMIT_API = "1/min"
    settings.RATE_LIMIT_USER_FACTOR = 1
    browser = signed_in(alice)
    assert browser.post("/studio/new/").status_code == 302
    tabs = StudioTab.objects.filter(user=alice.user).count()

    refused = {
        "new": browser.post("/studio/new/"),
        "rename": browser.post(f"/studio/{tab.id}/rename/", {"title": "Renamed"}),
        "close": browser.post(f"/studio/{tab.id}/close/"),
        "remix": browser.post(f"/collection/{look.id}/remix/"),
    }

    for name, answer in refused.items():
        assert answer.status_code == 429, name
        assert int(answer["Retry-After"]) >= 1, name
        assert "Too many requests in a short time; try again in" in answer.content.decode(), name
    assert StudioTab.objects.filter(user=alice.user).count() == tabs  # none opened, none closed
    assert StudioTab.objects.get(id=tab.id).title == "Kept"
    assert 'data-testid="remix"' in refused["remix"].content.decode()  # the look's own page


def test_with_the_rate_limit_cache_unreachable_requests_are_let_through(alice, settings):
    settings.RATE_LIMIT_SUBMIT = "1/min"
    settings.CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": "redis://127.0.0.1:1/0",  # nothing listens there
            "OPTIONS": {"socket_connect_timeout": 0.5, "socket_timeout": 0.5},
        }
    }
    # Credits and quotas, in the database, still bound what can be spent.
    assert [submit(alice.client).status_code for _ in range(2)] == [202, 202]


def test_a_rate_that_is_not_a_rate_stops_the_start_naming_its_variable(monkeypatch):
    monkeypatch.setenv("RATE_LIMIT_SUBMIT", "30/mango")
    with pytest.raises(ImproperlyConfigured, match="RATE_LIMIT_SUBMIT"):
        env_rate("RATE_LIMIT_SUBMIT", "30/min")
    monkeypatch.setenv("RATE_LIMIT_SUBMIT", "0/min")
    with pytest.raises(ImproperlyConfigured, match="RATE_LIMIT_SUBMIT"):
        env_rate("RATE_LIMIT_SUBMIT", "30/min")
    monkeypatch.setenv("RATE_LIMIT_SUBMIT", "45/hour")
    assert env_rate("RATE_LIMIT_SUBMIT", "30/min") == "45/hour"


# --- Active jobs -------------------------------------------------------------------------------


def test_over_the_active_jobs_quota_a_submit_is_409_naming_it_and_holds_nothing(alice, settings):
    settings.QUOTA_ACTIVE_JOBS = 2
    first = submit(alice.client, prompt="first", subject_key="nail-1")
    assert first.status_code == 202
    assert submit(alice.client, prompt="second").status_code == 202
    before = balances(alice)

    refused = submit(alice.client, prompt="third")

    assert refused.status_code == 409
    error = refused.json()["error"]
    assert error["code"] == "QUOTA_EXCEEDED"
    assert error["details"] == {"quota": "active_jobs", "limit": 2, "used": 2}
    assert "2 queued or running jobs" in error["message"]
    assert balances(alice) == before
    # What is already there is still answered: an active job for the subject is returned.
    again = submit(alice.client, prompt="first", subject_key="nail-1")
    assert again.status_code == 200 and again.json()["id"] == first.json()["id"]
    # Once a job ends there is room again.
    job_cancel(job=GenerationJob.objects.get(id=first.json()["id"]))
    assert submit(alice.client, prompt="third").status_code == 202


@pytest.mark.django_db(transaction=True)
def test_submits_at_the_same_moment_cannot_pass_the_active_jobs_quota_together(alice, settings):
    settings.QUOTA_ACTIVE_JOBS = 3
    racers = 12
    barrier = threading.Barrier(racers)
    outcomes: list[str] = []

    def race(number: int) -> None:
        try:
            barrier.wait(timeout=10)
            job_submit(team=alice.team, user=alice.user, spec=JobSpec(prompt=f"race {number}"))
            outcomes.append("accepted")
        except QuotaExceeded:
            outcomes.append("refused")
        finally:
            connection.close()  # this thread's own connection

    threads = [threading.Thread(target=race, args=(number,)) for number in range(racers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)

    assert sorted(outcomes) == ["accepted"] * 3 + ["refused"] * (racers - 3)
    assert GenerationJob.objects.filter(team=alice.team).count() == 3
    assert CreditAccount.objects.get(team=alice.team).held == 3


def test_an_idempotent_replay_is_answered_when_the_quota_is_full(alice, settings):
    settings.QUOTA_ACTIVE_JOBS = 1
    headers = {"Idempotency-Key": "order-77"}
    original = alice.client.post(JOBS, {"prompt": "once"}, format="json", headers=headers)
    replay = alice.client.post(JOBS, {"prompt": "once"}, format="json", headers=headers)
    assert original.status_code == replay.status_code == 202
    assert replay["Idempotent-Replayed"] == "true"
    assert replay.json()["id"] == original.json()["id"]


def test_a_teams_own_active_jobs_quota_wins_over_the_setting(alice, charlie, settings):
    settings.QUOTA_ACTIVE_JOBS = 1
    alice.team.quota_active_jobs = 3
    alice.team.save(update_fields=["quota_active_jobs"])
    assert [submit(alice.client).status_code for _ in range(3)] == [202, 202, 202]
    refused = submit(alice.client)
    assert refused.status_code == 409 and refused.json()["error"]["details"]["limit"] == 3
    # Charlie's team has no override: the setting.
    assert submit(charlie.client).status_code == 202
    assert submit(charlie.client).status_code == 409


def test_a_retry_over_the_active_jobs_quota_is_refused_and_holds_nothing(alice, settings):
    settings.QUOTA_ACTIVE_JOBS = 1
    failed = submit(alice.client, prompt="will fail").json()["id"]
    job_fail(job=GenerationJob.objects.get(id=failed))
    assert submit(alice.client, prompt="now active").status_code == 202
    before = balances(alice)

    refused = alice.client.post(f"{JOBS}/{failed}/retry")

    assert refused.status_code == 409
    assert refused.json()["error"]["details"]["quota"] == "active_jobs"
    assert balances(alice) == before


def test_the_studio_retry_button_has_the_submit_limit(alice, settings):
    settings.RATE_LIMIT_SUBMIT = "1/min"
    failed = job_submit(team=alice.team, user=alice.user, spec=JobSpec(prompt="will fail")).job
    job_fail(job=failed)
    browser = signed_in(alice)
    tab = tab_create(user=alice.user, team=alice.team)
    assert browser.post(f"/studio/{tab.id}/generate/", {"prompt": "one", "count": "1"}).status_code == 302
    before = balances(alice)

    answer = browser.post(f"/jobs/{failed.id}/retry/", follow=True)

    assert "Too many generations in a short time; try again in" in answer.content.decode()
    assert balances(alice) == before


def test_the_studio_shows_the_active_jobs_quota_instead_of_starting_a_job(alice, settings):
    settings.QUOTA_ACTIVE_JOBS = 1
    assert submit(alice.client).status_code == 202
    tab = tab_create(user=alice.user, team=alice.team)
    before = balances(alice)

    page = signed_in(alice).post(f"/studio/{tab.id}/generate/", {"prompt": "one more", "count": "1"}, follow=True)

    assert page.redirect_chain == [(f"/studio/{tab.id}/", 302)]
    assert "1 queued or running jobs is reached" in page.content.decode()
    assert balances(alice) == before


# --- Studio tabs and drafts ----------------------------------------------------------------------


def test_a_script_opening_100_tabs_gets_the_quota_and_a_message(alice, settings):
    settings.QUOTA_STUDIO_TABS = 5
    browser = signed_in(alice)
    answers = [browser.post("/studio/new/") for _ in range(100)]

    assert all(answer.status_code == 302 for answer in answers)
    assert StudioTab.objects.filter(user=alice.user, team=alice.team).count() == 5
    page = browser.get(answers[-1]["Location"], follow=True).content.decode()
    assert "5 studio tabs per person is reached. Close a tab to open another." in page


def _look(person, **job_fields) -> Look:  # type: ignore[no-untyped-def]
    job = GenerationJobFactory(
        team=person.team, created_by=person.user, status="succeeded", finished_at=timezone.now(), **job_fields
    )
    output = GeneratedOutput.objects.create(
        job=job, index=0, file="f0.png", mime="image/png", width=1, height=1, bytes=1, sha256="0"
    )
    return Look.objects.create(team=person.team, output=output, job=job)


def test_remix_over_the_tabs_quota_shows_a_message_and_opens_no_tab(alice, settings):
    look = _look(alice)
    settings.QUOTA_STUDIO_TABS = 1
    tab_create(user=alice.user, team=alice.team)
    browser = signed_in(alice)

    answer = browser.post(f"/collection/{look.id}/remix/", follow=True)

    assert answer.status_code == 200
    assert "Close a studio tab to remix this look." in answer.content.decode()
    assert StudioTab.objects.filter(user=alice.user).count() == 1


def test_remix_of_a_look_over_the_draft_quota_says_so_and_not_to_close_a_tab(alice, settings):
    look = _look(alice, prompt="a very long prompt " * 200)
    settings.QUOTA_DRAFT_KB = 1
    tabs = StudioTab.objects.filter(user=alice.user).count()

    page = signed_in(alice).post(f"/collection/{look.id}/remix/", follow=True).content.decode()

    assert "a studio draft may hold at most 1 KB. Shorten the prompt." in page
    assert "Close a studio tab" not in page
    assert StudioTab.objects.filter(user=alice.user).count() == tabs


def test_a_10_mb_prompt_typed_into_the_studio_is_never_saved_and_the_tab_stays_small(alice):
    browser = signed_in(alice)
    tab = tab_create(user=alice.user, team=alice.team, draft={"prompt": "my saved design"})

    estimate = browser.post(f"/studio/{tab.id}/estimate/", {"prompt": TEN_MB_PROMPT}, headers={"HX-Request": "true"})

    assert estimate.status_code == 413
    partial = estimate.content.decode()
    assert "a studio draft may hold at most 64 KB" in partial and len(partial) < 10_000
    tab.refresh_from_db()
    assert tab.draft == {"prompt": "my saved design"}
    page = browser.get(f"/studio/{tab.id}/")
    assert len(page.content) < 200_000 and "my saved design" in page.content.decode()


def test_a_10_mb_prompt_sent_with_generate_stores_no_draft_no_upload_and_no_job(alice):
    browser = signed_in(alice)
    tab = tab_create(user=alice.user, team=alice.team)
    image = SimpleUploadedFile("ref.png", png_bytes(), content_type="image/png")
    before = balances(alice)

    answer = browser.post(f"/studio/{tab.id}/generate/", {"prompt": TEN_MB_PROMPT, "reference_1": image}, follow=True)

    assert answer.redirect_chain == [(f"/studio/{tab.id}/", 302)]  # the tab as stored, with the message
    assert len(answer.content) < 200_000
    assert "a studio draft may hold at most 64 KB" in answer.content.decode()
    tab.refresh_from_db()
    assert tab.draft == {}
    assert InputAsset.objects.filter(team=alice.team).count() == 0
    assert balances(alice) == before


def test_a_teams_draft_quota_applies_to_its_drafts(alice):
    alice.team.quota_draft_kb = 1
    alice.team.save(update_fields=["quota_draft_kb"])
    browser = signed_in(alice)
    tab = tab_create(user=alice.user, team=alice.team)

    answer = browser.post(f"/studio/{tab.id}/estimate/", {"prompt": "y" * 2000}, follow=True)

    assert answer.redirect_chain == [(f"/studio/{tab.id}/", 302)]
    assert "y" * 2000 not in answer.content.decode()  # the refused text is not carried back
    tab.refresh_from_db()
    assert tab.draft == {}


def test_a_10_mb_prompt_through_the_api_is_refused_and_stores_nothing(alice):
    before = balances(alice)
    response = submit(alice.client, prompt=TEN_MB_PROMPT)
    assert response.status_code in (400, 413)  # the prompt's 4000 characters, or the body's size
    assert response.json()["error"]["code"] in ("VALIDATION_ERROR", "REQUEST_TOO_LARGE")
    assert balances(alice) == before


# --- Queue position ------------------------------------------------------------------------------


def test_queue_position_is_the_place_in_the_fair_order_so_a_flood_puts_one_job_ahead_per_turn(alice, charlie):
    flood = [submit(charlie.client, prompt="charlie's flood").json() for _ in range(5)]
    first = submit(alice.client, prompt="alice first").json()
    second = submit(alice.client, prompt="alice second").json()

    # Teams take turns, Charlie's first (its oldest job is older): C1 A1 C2 A2 C3 C4 C5.
    assert (first["queue_position"], second["queue_position"]) == (2, 4)
    assert first["waiting_reason"] == "capacity"
    listed = {job["id"]: job["queue_position"] for job in alice.client.get(JOBS).json()["results"]}
    assert listed == {first["id"]: 2, second["id"]: 4}
    assert charlie.client.get(f"{JOBS}/{flood[4]['id']}").json()["queue_position"] == 7
    # More of Charlie's jobs go behind Alice's.
    submit(charlie.client, prompt="charlie again")
    assert alice.client.get(f"{JOBS}/{second['id']}").json()["queue_position"] == 4


def test_the_studio_progress_panel_shows_the_place_in_the_fair_order(alice, charlie):
    for _ in range(3):
        submit(charlie.client, prompt="charlie's flood")
    tab = tab_create(user=alice.user, team=alice.team)
    submit(alice.client, prompt="in my tab", tab=tab.id)

    panel = signed_in(alice).get(f"/studio/{tab.id}/progress/").content.decode()

    assert "Position 2 in the queue." in panel


# --- Admin ---------------------------------------------------------------------------------------


def test_the_team_admin_shows_the_quotas_with_their_defaults(alice, settings):
    settings.QUOTA_ACTIVE_JOBS = 7
    operator = User.objects.create_superuser(email="ops@example.com", password="operator-password")
    browser = Client()
    browser.force_login(operator)

    page = browser.get(f"/admin/accounts/team/{alice.team.id}/change/").content.decode()

    assert "Quotas" in page
    assert "Empty = the default, QUOTA_ACTIVE_JOBS: 7 queued or running jobs." in page
    assert 'name="quota_studio_tabs"' in page


@pytest.mark.django_db(transaction=True)
def test_in_the_browser_a_draft_over_the_quota_shows_its_message_in_the_estimate(alice, browser, live_server):
    alice.team.quota_draft_kb = 1
    alice.team.save(update_fields=["quota_draft_kb"])
    context = browser.new_context(base_url=live_server.url, viewport=DESKTOP)
    context.set_default_timeout(SLOW)
    watch = PolicyWatch(context)
    page = log_in(context, alice.user.email)

    page.get_by_test_id("prompt").fill("z" * 2000)

    expect(page.get_by_test_id("estimate")).to_contain_text("a studio draft may hold at most 1 KB")
    assert StudioTab.objects.get(user=alice.user).draft == {}
    context.close()
    assert watch.refusals == []  # under the Content-Security-Policy


def test_in_the_browser_estimates_over_their_limit_show_the_wait_in_the_estimate(alice, browser, live_server, settings):
    settings.RATE_LIMIT_ESTIMATE = "1/min"
    context = browser.new_context(base_url=live_server.url, viewport=DESKTOP)
    context.set_default_timeout(SLOW)
    watch = PolicyWatch(context)
    page = log_in(context, alice.user.email)
    page.get_by_test_id("prompt").fill("a gold design")
    expect(page.get_by_test_id("estimate-credits")).to_be_visible()

    page.get_by_test_id("prompt").fill("a gold and pink nail design")

    expect(page.get_by_test_id("estimate")).to_contain_text("Too many requests in a short time; try again in")
    # The refused estimate saved nothing: the draft is the first one.
    assert StudioTab.objects.get(user=alice.user).draft["prompt"] == "a gold design"
    context.close()
    assert watch.refusals == []
