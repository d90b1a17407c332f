"""The live status every signed-in page polls (GET /activity/) and the queue page, through
Django's test client: a 304 while nothing changed, one team's jobs only, rendering writes
nothing, and the queue position the pages show is the API's."""

from __future__ import annotations

import re

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext

from accounts.teams import SESSION_TEAM_KEY
from generation.models import GenerationJob
from generation.services.scheduler import job_claim_next
from generation.services.submit import JobSpec, job_submit
from tests.helpers import job_deliver, job_fail

pytestmark = pytest.mark.django_db

ACTIVITY = "/activity/"
# The session, the person, the team, the balance, the active jobs, the unseen finished ones, and
# the queue snapshot (read only while something is queued).
ACTIVITY_QUERY_LIMIT = 7


def signed_in_browser(person) -> Client:  # type: ignore[no-untyped-def]
    """A browser signed in as `person`, acting for `person.team` (Bob's is Alice's team)."""
    client = Client()
    client.force_login(person.user)
    session = client.session
    session[SESSION_TEAM_KEY] = person.team.id
    session.save()
    return client


def submitted(person, prompt: str, count: int = 2) -> GenerationJob:  # type: ignore[no-untyped-def]
    return job_submit(team=person.team, user=person.user, spec=JobSpec(prompt=prompt, count=count)).job


def test_the_activity_poll_answers_304_to_its_own_etag_until_something_changes(alice):
    client = signed_in_browser(alice)
    job = submitted(alice, "a lighthouse in fog")
    first = client.get(ACTIVITY)
    assert first.status_code == 200
    assert "a lighthouse in fog" in first.content.decode()
    unchanged = client.get(ACTIVITY, headers={"if-none-match": first["ETag"]})
    assert unchanged.status_code == 304
    assert unchanged.content == b""

    job_deliver(job=job, indexes=[0])  # an image made: the progress and the balance move
    moved = client.get(ACTIVITY, headers={"if-none-match": first["ETag"]})
    assert moved.status_code == 200
    assert "1 of 2" in moved.content.decode()


def test_the_activity_poll_and_the_queue_page_list_only_the_current_teams_jobs(alice, bob, charlie):
    submitted(alice, "alice's own job")
    submitted(bob, "bob's job in alice's team")
    submitted(charlie, "charlie's secret job")
    for person in (alice, bob):
        client = signed_in_browser(person)
        for answer in (client.get(ACTIVITY).content.decode(), client.get("/queue/").content.decode()):
            assert "alice&#x27;s own job" in answer and "bob&#x27;s job in alice&#x27;s team" in answer
            assert "charlie" not in answer
    outsider = signed_in_browser(charlie).get(ACTIVITY).content.decode()
    assert "charlie&#x27;s secret job" in outsider
    assert "alice" not in outsider and "bob" not in outsider


def test_the_header_and_the_queue_count_the_teams_active_jobs_and_the_balance(alice, bob):
    submitted(alice, "one", count=3)
    submitted(bob, "two", count=2)
    alice.team.credit_account.refresh_from_db()
    page = signed_in_browser(alice).get("/collection/").content.decode()
    assert f"{alice.team.credit_account.available} credits" in page
    assert 'data-testid="queue-count">(2)<' in page  # the team's two jobs, both members'
    assert "1 still generating" in page  # Alice's own


def test_rendering_a_page_marks_nothing_seen_and_the_poll_shows_what_finished_once(alice):
    client = signed_in_browser(alice)
    job = submitted(alice, "finished while away")
    job_fail(job=job)
    client.get("/collection/")
    client.get("/queue/")
    job.refresh_from_db()
    assert job.seen_at is None  # a page drew; it wrote nothing

    shown = client.get(ACTIVITY, {"arrival": "1"}).content.decode()
    assert "1 generation finished while you were away (0 images)" in shown
    job.refresh_from_db()
    assert job.seen_at is not None
    assert "finished while away" not in client.get(ACTIVITY, {"arrival": "1"}).content.decode()


def test_a_job_ending_in_the_watched_tab_is_left_to_its_panel_but_told_on_return(alice):
    client = signed_in_browser(alice)
    tab_id = int(client.get("/studio/")["Location"].rstrip("/").rsplit("/", 1)[1])
    job = job_submit(team=alice.team, user=alice.user, spec=JobSpec(prompt="watched here", count=1, tab_id=tab_id)).job
    job_fail(job=job)
    watched = client.get(ACTIVITY, {"tab": str(tab_id), "watching": str(tab_id)}).content.decode()
    assert "watched here" not in watched  # the tab's own panel shows it end, and marks it seen
    job.refresh_from_db()
    assert job.seen_at is None
    # Coming back to that tab later, the job finished while the person was away: the notice says so.
    arrival = client.get(ACTIVITY, {"tab": str(tab_id), "watching": str(tab_id), "arrival": "1"}).content.decode()
    assert "1 generation finished while you were away" in arrival and "watched here" in arrival


def test_a_busy_tab_gets_its_dot_from_the_poll_and_loses_it_when_its_job_ends(alice):
    client = signed_in_browser(alice)
    tab_id = int(client.get("/studio/")["Location"].rstrip("/").rsplit("/", 1)[1])
    job = job_submit(team=alice.team, user=alice.user, spec=JobSpec(prompt="dot", count=1, tab_id=tab_id)).job
    busy = client.get(ACTIVITY, {"tab": str(tab_id)}).content.decode()
    assert f'id="tab-busy-{tab_id}"' in busy and 'data-testid="tab-busy"' in busy
    job_fail(job=job)
    idle = client.get(ACTIVITY, {"tab": str(tab_id)}).content.decode()
    assert f'id="tab-busy-{tab_id}"' in idle and 'data-testid="tab-busy"' not in idle


def test_the_poll_draws_a_busy_dot_for_at_most_the_tabs_quota_of_ids_and_ignores_what_is_not_one(alice, settings):
    settings.QUOTA_STUDIO_TABS = 5
    client = signed_in_browser(alice)
    tab_id = int(client.get("/studio/")["Location"].rstrip("/").rsplit("/", 1)[1])
    job_submit(team=alice.team, user=alice.user, spec=JobSpec(prompt="busy", count=1, tab_id=tab_id))
    asked = [str(tab_id), "x", "²", "-3", "1e3", str(tab_id), *(str(n) for n in range(10_000, 10_200))]

    answer = client.get(ACTIVITY, {"tab": asked})

    assert answer.status_code == 200
    drawn = answer.content.decode()
    # The first five ids that are ids, each once: the quota's five, not two hundred.
    assert re.findall(r'id="tab-busy-(\d+)"', drawn) == [
        str(n) for n in sorted({tab_id, 10_000, 10_001, 10_002, 10_003})
    ]
    assert f'<span id="tab-busy-{tab_id}" class="tab-busy" hx-swap-oob="true"><span class="dot"' in drawn


def test_the_queue_panel_and_the_studio_panel_say_a_queued_jobs_place_in_the_same_words(alice, settings):
    settings.TEAM_MAX_RUNNING_JOBS = 1
    submitted(alice, "already running")
    assert job_claim_next(suspects=False, token="t", worker="w", ran_alone=False) is not None
    client = signed_in_browser(alice)
    tab_id = int(client.get("/studio/")["Location"].rstrip("/").rsplit("/", 1)[1])
    waiting = job_submit(team=alice.team, user=alice.user, spec=JobSpec(prompt="waits", count=1, tab_id=tab_id)).job

    panel = client.get(f"/studio/{tab_id}/progress/").content.decode()
    queue = client.get("/queue/").content.decode()

    in_panel = panel.split('data-testid="queue-position">', 1)[1].split("</p>", 1)[0]
    in_queue = queue.split(f'data-job-id="{waiting.id}"', 1)[1].split('data-testid="queue-place">', 1)[1]
    in_queue = in_queue.split("</p>", 1)[0]
    assert in_panel == in_queue
    assert in_panel.startswith("Position 1 in the queue: your team already runs as many jobs as its plan allows")


def test_the_queue_panel_shows_the_same_queue_position_as_the_api(alice, charlie):
    jobs = [submitted(alice, f"queued {n}") for n in range(3)]
    submitted(charlie, "charlie queued")
    page = signed_in_browser(alice).get("/queue/").content.decode()
    positions = []
    for job in jobs:
        position = alice.client.get(f"/api/v1/jobs/{job.id}").json()["queue_position"]
        item = page.split(f'data-job-id="{job.id}"', 1)[1].split("</article>", 1)[0]
        assert f"Position {position} in the queue" in item
        positions.append(position)
    assert positions == sorted(positions) and len(set(positions)) == 3


def test_the_activity_poll_takes_the_same_few_queries_for_1_or_6_active_jobs(alice, charlie):
    client = signed_in_browser(alice)
    client.get(ACTIVITY)  # the session and the person are read once per request either way

    def queries_for_a_poll() -> int:
        with CaptureQueriesContext(connection) as queries:
            assert client.get(ACTIVITY).status_code == 200
        return len(queries)

    submitted(alice, "one of them")
    submitted(charlie, "another team's, ahead in the queue")
    few = queries_for_a_poll()
    for n in range(5):
        submitted(alice, f"more {n}")
    assert few <= ACTIVITY_QUERY_LIMIT
    assert queries_for_a_poll() == few
