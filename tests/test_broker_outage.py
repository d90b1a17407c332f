"""The broker is down when a job is submitted: the submit succeeds and the job runs once it is back.

Web, worker and beat run as real processes against a Redis of this test's own, so stopping
the broker here does not stop the machine's Redis.
"""

from __future__ import annotations

import time

import pytest
import requests

from generation.models import GenerationJob
from tests.conftest import wait_for_finish
from tests.processes import child_environment, start_beat, start_redis, start_rescuer, start_web, start_worker

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.worker]


def test_submit_during_a_broker_outage_is_accepted_and_runs_after_the_broker_is_back(alice, log_dir, capsys):
    redis, port = start_redis(log_dir)
    env = child_environment(CELERY_BROKER_URL=f"redis://127.0.0.1:{port}/0", LOCAL_PROVIDER_LATENCY_MS="100")
    processes = [redis]
    try:
        web, base_url = start_web(env, log_dir)
        processes.append(web)
        worker = start_worker(env, log_dir)
        processes.append(worker)
        processes.append(start_rescuer(env, log_dir))
        processes.append(start_beat(env, log_dir))
        redis.stop()
        started = time.monotonic()
        response = requests.post(
            f"{base_url}/api/v1/jobs",
            json={"prompt": "submitted while the broker is down", "count": 2},
            headers={"Authorization": f"Bearer {alice.api_key}"},
            timeout=30,
        )
        assert response.status_code == 202, response.text
        with capsys.disabled():
            print(f"\n[figure] submit with the broker down answered in {time.monotonic() - started:.2f}s")
        job_id = response.json()["id"]
        assert GenerationJob.objects.get(id=job_id).status == "queued"

        redis, _ = start_redis(log_dir, port=port)  # the broker comes back; nobody re-submits
        processes.append(redis)
        job = wait_for_finish(job_id, timeout=60)
        assert job.status == "succeeded"
        assert job.completed_outputs == 2
        assert "Could not publish job" in web.log()
    finally:
        for process in reversed(processes):
            process.stop()
