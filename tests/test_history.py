"""The Jobs page reads a job and its retries as one generation; a finished job's panel offers the
next step that fits (retry, finish a canceled job's missing images, edit a refused prompt)."""

from __future__ import annotations

import re

import pytest
from django.db import connection
from django.db.models import Q
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from credits.models import LedgerEntry
from generation.models import GeneratedOutput, GenerationJob, StudioTab
from generation.pages import jobs
from generation.pages.failures import CONTENT_POLICY_ADVICE
from generation.providers.errors import CONTENT_POLICY
from generation.services.lifecycle import job_cancel, job_finish
from generation.services.retry import job_retry
from generation.services.studio import tab_close, tab_create
from generation.services.submit import JobSpec, job_submit
from tests.helpers import failed_chain, job_deliver, job_fail, signed_in

pytestmark = pytest.mark.django_db


def submit(person, prompt: str, count: int, tab: StudioTab | None = None) -> GenerationJob:  # type: ignore[no-untyped-def]
    spec = JobSpec(prompt=prompt, count=count, tab_id=tab.id if tab else None)
    return job_submit(team=person.team, user=person.user, spec=spec).job


def succeed(job: GenerationJob) -> None:
    job_deliver(job=job, indexes=range(job.completed_outputs, job.total_outputs))
    assert job_finish(job_id=job.id, fence=Q(), status=GenerationJob.Status.SUCCEEDED)


def refuse(job: GenerationJob) -> None:
    """The provider refused the job on content grounds (as generation/providers/errors.py says it)."""
    assert job_finish(
        job_id=job.id,
        fence=Q(),
        status=GenerationJob.Status.FAILED,
        error_code=CONTENT_POLICY,
        error_message="Image 1 was refused by the content policy.",
    )


def seen_all() -> None:
    """Every finished job noticed already: the "finished while you were away" notice (which marks
    what it shows as seen) is not part of what the Jobs page itself reads."""
    GenerationJob.objects.update(seen_at=timezone.now())


def rows(html: str) -> list[str]:
    return re.findall(r'<article class="chain".*?</article>', html, flags=re.S)


def fixed_chain(person, prompt: str) -> tuple[GenerationJob, GenerationJob]:  # type: ignore[no-untyped-def]
    """A job that failed after two of four images and its retry that made the other two."""
    original = submit(person, prompt, 4)
    job_deliver(job=original, indexes=[0, 1])
    job_fail(job=original)
    retry, _ = job_retry(job=original, user=person.user)
    succeed(retry)
    return original, retry


def test_a_failed_job_and_its_successful_retry_are_one_row_with_the_latest_state_and_both_attempts(alice):
    original, retry = fixed_chain(alice, "fixed by a retry")
    html = signed_in(alice).get("/jobs/").content.decode()
    [row] = rows(html)
    assert 'data-testid="job-status">Succeeded<' in row
    assert "4 of 4 images" in row and "after 2 attempts" in row
    assert f'href="/jobs/{retry.id}/" data-testid="job-link"' in row  # the row opens the latest attempt
    history = row[row.index('data-testid="chain-history"') :]
    assert history.count('data-testid="attempt"') == 2
    assert f"/jobs/{original.id}/" in history and f"/jobs/{retry.id}/" in history
    assert 'data-testid="attempt-status">Failed<' in history and "2 made, 2 carried over" in history


def test_the_failed_filter_lists_only_generations_still_failed(alice):
    fixed_chain(alice, "fixed by a retry")
    failed_chain(alice, "still failing")  # the job and its retry both failed
    never_retried = submit(alice, "failed once, never retried", 1)
    job_fail(job=never_retried)
    failed = "".join(rows(signed_in(alice).get("/jobs/?status=failed").content.decode()))
    assert "fixed by a retry" not in failed
    assert failed.count("<article") == 2 and "still failing" in failed and "failed once, never retried" in failed
    succeeded = rows(signed_in(alice).get("/jobs/?status=succeeded").content.decode())
    assert len(succeeded) == 1 and "fixed by a retry" in succeeded[0]


def test_pages_count_generations_not_jobs(alice, monkeypatch):
    for number in range(3):
        fixed_chain(alice, f"chain {number}")
    client = signed_in(alice)
    monkeypatch.setattr(jobs, "PAGE_SIZE", 2)
    first, second = client.get("/jobs/").content.decode(), client.get("/jobs/?page=2").content.decode()
    assert len(rows(first)) == 2 and len(rows(second)) == 1
    assert "Older" in first and "Older" not in second


def test_the_jobs_page_reads_in_a_bounded_number_of_queries_whatever_the_chains_and_images(alice):
    client = signed_in(alice)
    fixed_chain(alice, "first chain")
    seen_all()
    client.get("/jobs/")
    with CaptureQueriesContext(connection) as few:
        assert client.get("/jobs/").status_code == 200
    for number in range(4):
        fixed_chain(alice, f"more chains {number}")
        failed_chain(alice, f"longer chains {number}")
    seen_all()
    with CaptureQueriesContext(connection) as many:
        html = client.get("/jobs/").content.decode()
    assert len(rows(html)) == 9
    assert len(many.captured_queries) == len(few.captured_queries)


def test_times_on_the_jobs_page_are_in_the_persons_time_zone_and_name_it(alice):
    submit(alice, "what time is it", 1)
    client = signed_in(alice)
    client.cookies["tz"] = "Asia/Tokyo"
    assert "JST" in client.get("/jobs/").content.decode()


def test_a_canceled_job_offers_to_finish_its_missing_images_and_the_retry_makes_only_those(alice):
    job = submit(alice, "stopped early", 4)
    job_deliver(job=job, indexes=[0])
    job_cancel(job=job)
    client = signed_in(alice)
    panel = client.get(f"/jobs/{job.id}/progress/").content.decode()
    assert f"Finish the missing 3 images · {3 * job.credits_per_output} credits" in panel
    assert 'data-testid="retry"' not in panel

    response = client.post(f"/jobs/{job.id}/retry/")
    finish = GenerationJob.objects.get(retry_of=job)
    assert response.status_code == 302 and response["Location"] == f"/jobs/{finish.id}/"
    assert finish.chain_root_id == job.id and finish.completed_outputs == 1 and finish.total_outputs == 4
    carried = GeneratedOutput.objects.get(job=finish)
    assert carried.index == 0 and carried.carried_from_id is not None
    hold = LedgerEntry.objects.get(job_id=finish.id, kind=LedgerEntry.Kind.HOLD)
    assert hold.held_delta == 3 * finish.credits_per_output  # the missing three only

    # At most one active job per chain: asking again answers with the same one.
    client.post(f"/jobs/{job.id}/retry/")
    assert GenerationJob.objects.filter(chain_root=job).count() == 1
    panel = client.get(f"/jobs/{job.id}/progress/").content.decode()
    assert "Finish the missing" not in panel and f'href="/jobs/{finish.id}/" data-testid="retry-link"' in panel


def test_a_canceled_job_with_nothing_missing_offers_no_finish_and_has_nothing_to_retry(alice):
    job = submit(alice, "canceled after the last image", 2)
    job_deliver(job=job, indexes=[0, 1])
    job_cancel(job=job)
    assert "Finish the missing" not in signed_in(alice).get(f"/jobs/{job.id}/progress/").content.decode()
    assert alice.client.post(f"/api/v1/jobs/{job.id}/retry").status_code == 409
    assert not GenerationJob.objects.filter(retry_of=job).exists()


def test_the_api_finishes_a_canceled_jobs_missing_images_too(alice):
    job = submit(alice, "canceled, finished by the API", 3)
    job_deliver(job=job, indexes=[0, 1])
    job_cancel(job=job)
    response = alice.client.post(f"/api/v1/jobs/{job.id}/retry")
    assert response.status_code == 201
    finish = GenerationJob.objects.get(id=response.json()["id"])
    assert finish.retry_of_id == job.id and finish.completed_outputs == 2
    assert LedgerEntry.objects.get(job_id=finish.id, kind=LedgerEntry.Kind.HOLD).held_delta == finish.credits_per_output


def test_a_content_policy_refusal_explains_itself_and_offers_edit_prompt_not_retry(alice):
    job = submit(alice, "a refused prompt", 2)
    refuse(job)
    panel = signed_in(alice).get(f"/jobs/{job.id}/progress/").content.decode()
    assert CONTENT_POLICY_ADVICE.words.replace("'", "&#x27;") in panel
    assert 'data-testid="edit-prompt"' in panel and 'data-testid="retry"' not in panel
    assert f'data-testid="error-code">{CONTENT_POLICY}<' in panel  # small print, for support


def test_a_refusal_after_some_images_still_offers_retry_beside_edit_prompt(alice):
    job = submit(alice, "refused half way", 4)
    job_deliver(job=job, indexes=[0, 1])
    refuse(job)
    panel = signed_in(alice).get(f"/jobs/{job.id}/progress/").content.decode()
    assert 'data-testid="edit-prompt"' in panel and "Retry unchanged" in panel


def test_other_failures_keep_retry_with_plain_words(alice):
    job = submit(alice, "the provider timed out", 1)
    assert job_finish(
        job_id=job.id, fence=Q(), status=GenerationJob.Status.FAILED, error_code="PROVIDER_TIMEOUT", error_message="x"
    )
    panel = signed_in(alice).get(f"/jobs/{job.id}/progress/").content.decode()
    assert "The provider did not answer in time." in panel
    assert 'data-testid="retry"' in panel and 'data-testid="edit-prompt"' not in panel


def test_edit_prompt_opens_the_jobs_own_tab_at_the_prompt(alice):
    client = signed_in(alice)
    tab = tab_create(user=alice.user, team=alice.team)
    job = submit(alice, "refused in its tab", 1, tab=tab)
    refuse(job)
    response = client.post(f"/jobs/{job.id}/edit-prompt/")
    assert response.status_code == 302 and response["Location"] == f"/studio/{tab.id}/#id_prompt"
    assert StudioTab.objects.filter(user=alice.user).count() == 1


def test_edit_prompt_of_a_job_whose_tab_is_gone_opens_a_new_tab_with_its_settings(alice):
    client = signed_in(alice)
    tab = tab_create(user=alice.user, team=alice.team)
    job = submit(alice, "refused, tab closed", 3, tab=tab)
    refuse(job)
    tab_close(tab=tab)
    response = client.post(f"/jobs/{job.id}/edit-prompt/")
    new_tab = StudioTab.objects.get(user=alice.user)
    assert response["Location"] == f"/studio/{new_tab.id}/#id_prompt"
    assert new_tab.draft["prompt"] == "refused, tab closed" and new_tab.draft["count"] == 3
    assert new_tab.draft["params"]["seed"] == job.params["seed"]
    page = client.get(f"/studio/{new_tab.id}/").content.decode()
    assert "refused, tab closed</textarea>" in page


def test_a_failed_job_with_a_retry_links_to_it_instead_of_offering_another(alice):
    original, retry = fixed_chain(alice, "retried already")
    panel = signed_in(alice).get(f"/jobs/{original.id}/progress/").content.decode()
    assert "Retried:" in panel and f'href="/jobs/{retry.id}/" data-testid="retry-link"' in panel
    assert 'data-testid="retry"' not in panel


def test_another_teams_job_actions_are_not_found(alice, charlie):
    job = submit(alice, "not yours", 1)
    refuse(job)
    client = signed_in(charlie)
    assert client.post(f"/jobs/{job.id}/edit-prompt/").status_code == 404
    assert not rows(client.get("/jobs/").content.decode())
