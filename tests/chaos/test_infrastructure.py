"""Our own parts failing under running jobs: database connections, storage, the broker."""

from __future__ import annotations

import io
import signal
import time
import zipfile

import pytest
import requests

from credits.services import JobCredits, job_credits
from generation.models import GenerationJob
from tests.chaos.conftest import (
    StorageOutage,
    api,
    assert_books_clean,
    report,
    submit_jobs,
    terminate_backends,
    wait_all_finished,
)
from tests.processes import wait_until

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.chaos]


def test_database_connections_terminated_three_times_in_15_s_fail_no_job_and_no_request(make_chaos_stack, team_of):
    stack = make_chaos_stack(LOCAL_PROVIDER_LATENCY_MS="2000")
    person = team_of("dbdrops")
    job_ids = submit_jobs(stack, person, count=10, images=8)
    wait_until(lambda: GenerationJob.objects.filter(id__in=job_ids, status="running").exists(), timeout=30)
    terminated = []
    page_answers = []
    for _ in range(3):
        time.sleep(4)
        terminated.append(terminate_backends("atelier-worker0"))
        terminated_web = terminate_backends("atelier-web")
        # The web process's connections were dropped before these requests arrived.
        page_answers.append((terminated_web, api(stack, person, "GET", f"/jobs/{job_ids[0]}").status_code))
    jobs = wait_all_finished(job_ids, timeout=120)
    books = assert_books_clean(job_ids)
    report(
        "the worker's database connections terminated 3 times within 15 s (10 jobs x 8 images, 2 s each)",
        worker_connections_terminated=terminated,
        web_requests_after_their_connections_were_terminated=page_answers,
        statuses=sorted({job.status for job in jobs.values()}),
        images=books["outputs"],
        pauses_logged=stack.workers[0].log().count("paused: database"),
    )
    assert all(job.status == "succeeded" for job in jobs.values())
    assert books["outputs"] == 80
    assert all(status == 200 for _, status in page_answers)
    assert sum(terminated) > 0


def test_media_storage_unwritable_for_30_s_pauses_jobs_that_then_succeed(make_chaos_stack, team_of):
    stack = make_chaos_stack(LOCAL_PROVIDER_LATENCY_MS="300")
    person = team_of("disk")
    job_ids = submit_jobs(stack, person, count=5, images=6)
    wait_until(lambda: GenerationJob.objects.filter(id__in=job_ids, completed_outputs__gte=1).exists(), timeout=30)
    outage = StorageOutage(stack.media_root)
    outage.begin()
    began = time.monotonic()
    time.sleep(30)
    made_during = sum(GenerationJob.objects.filter(id__in=job_ids).values_list("completed_outputs", flat=True))
    outage.end()
    ended = time.monotonic()
    jobs = wait_all_finished(job_ids, timeout=90)
    books = assert_books_clean(job_ids)
    report(
        "the media folder unwritable for 30 s during 5 jobs x 6 images (0.3 s each)",
        outage_seconds=f"{ended - began:.1f}",
        images_recorded_when_the_outage_ended=made_during,
        statuses=sorted({job.status for job in jobs.values()}),
        all_done_after_storage_came_back_seconds=f"{time.monotonic() - ended:.1f}",
        storage_pauses_logged=stack.workers[0].log().count("paused: storage"),
        images=books["outputs"],
    )
    assert all(job.status == "succeeded" for job in jobs.values())
    assert books["outputs"] == 30
    for job_id in job_ids:
        assert job_credits(job_id) == JobCredits(held=6, captured=6, released=0)


def _broker_outage(make_chaos_stack, team_of, *, how: str) -> None:
    stack = make_chaos_stack(LOCAL_PROVIDER_LATENCY_MS="500")
    person = team_of(f"broker-{how}")
    job_ids = submit_jobs(stack, person, count=50, images=2)
    wait_until(lambda: GenerationJob.objects.filter(id__in=job_ids, status="running").exists(), timeout=30)
    if how == "killed":
        stack.kill_redis()
    else:
        stack.redis.signal(signal.SIGSTOP)
    began = time.monotonic()
    submit_seconds, get_seconds = [], []
    during = []
    while time.monotonic() - began < 20:
        started = time.monotonic()
        response = api(stack, person, "POST", "/jobs", json={"prompt": "during the outage", "count": 1})
        submit_seconds.append(time.monotonic() - started)
        assert response.status_code == 202, response.text
        during.append(response.json()["id"])
        started = time.monotonic()
        assert api(stack, person, "GET", "/jobs?limit=5").status_code == 200
        get_seconds.append(time.monotonic() - started)
        time.sleep(1)
    if how == "killed":
        stack.restart_redis()
    else:
        stack.redis.signal(signal.SIGCONT)
    back = time.monotonic()
    jobs = wait_all_finished(job_ids + during, timeout=120)
    books = assert_books_clean(job_ids + during)
    report(
        f"Redis {how} for 20 s during 50 jobs x 2 images (0.5 s each), submitting every second meanwhile",
        submits_during_the_outage=len(during),
        submit_seconds=f"max {max(submit_seconds):.2f}, median {sorted(submit_seconds)[len(submit_seconds) // 2]:.2f}",
        job_list_get_seconds=f"max {max(get_seconds):.2f}",
        statuses=sorted({job.status for job in jobs.values()}),
        all_done_after_redis_was_back_seconds=f"{time.monotonic() - back:.1f}",
        images=books["outputs"],
    )
    assert all(job.status == "succeeded" for job in jobs.values())
    assert max(submit_seconds) < 2
    assert books["outputs"] == 100 + len(during)


def test_redis_killed_for_20_s_loses_no_job_and_submits_answer_within_2_s(make_chaos_stack, team_of):
    _broker_outage(make_chaos_stack, team_of, how="killed")


def test_redis_hung_for_20_s_loses_no_job_and_submits_answer_within_2_s(make_chaos_stack, team_of):
    _broker_outage(make_chaos_stack, team_of, how="hung (SIGSTOP)")


def test_a_zip_that_cannot_be_stored_does_not_fail_the_job_and_the_download_builds_it(make_chaos_stack, team_of):
    # Each image (about 0.2 MB) fits under the worker's file size limit; the zip of 8 does not.
    stack = make_chaos_stack(workers=0, LOCAL_PROVIDER_LATENCY_MS="50")
    stack.add_worker(max_file_bytes=1024 * 1024)
    person = team_of("zip")
    (job_id,) = submit_jobs(stack, person, count=1, images=8)
    job = wait_all_finished([job_id], timeout=60)[job_id]
    leftovers = sorted(p.name for p in (stack.media_root / "teams").rglob("*.zip"))
    download = requests.get(
        f"{stack.base_url}/api/v1/jobs/{job_id}/download",
        headers={"Authorization": f"Bearer {person.api_key}"},
        timeout=30,
    )
    names = sorted(zipfile.ZipFile(io.BytesIO(download.content)).namelist())
    # The web process (no file size limit) stores the zip it built, for the next downloads.
    stored_by_download = GenerationJob.objects.get(id=job_id).archive.name
    zips_after = sorted(p.name for p in (stack.media_root / "teams").rglob("*.zip"))
    report(
        "the zip write fails (file size limit) after the last of 8 images",
        job=f"{job.status}, {job.completed_outputs} images, stored zip: {job.archive.name or 'none'}",
        zip_failure_logged="the zip could not be stored" in stack.workers[0].log(),
        download=f"{download.status_code}, {len(download.content)} bytes, {len(names)} files, built by the download",
        partial_zips_left_in_storage=leftovers,
        zip_stored_by_the_download=stored_by_download or "none",
    )
    assert (job.status, job.completed_outputs, job.archive.name) == ("succeeded", 8, "")
    assert download.status_code == 200
    assert names == [f"chaos-0-{n}.png" for n in range(1, 9)]  # named after the prompt, "chaos 0"
    assert leftovers == []
    assert stored_by_download and zips_after == [stored_by_download.rsplit("/", 1)[1]]
    assert job_credits(job_id) == JobCredits(held=8, captured=8, released=0)
