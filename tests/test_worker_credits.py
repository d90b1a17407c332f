"""200 concurrent submits over HTTP against a balance that covers exactly 37 jobs."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests
from django.core.management import call_command
from django.db import connection

from credits.models import CreditAccount
from generation.models import GenerationJob
from tests.conftest import _person, wait_for_finish
from tests.factories import UserFactory
from tests.processes import start_web

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.worker]

AFFORDABLE = 37
REQUESTS = 200


@pytest.fixture(scope="module")
def stack(make_stack):
    return make_stack(LOCAL_PROVIDER_LATENCY_MS="50")


def test_200_concurrent_submits_accept_exactly_what_the_balance_covers(stack, log_dir, capsys, request):
    user = UserFactory(email="rush@example.com")
    person = _person(user, user.personal_team, credits=AFFORDABLE)  # one-image jobs cost 1 credit each
    web, base_url = start_web(stack.env, log_dir)
    request.addfinalizer(web.stop)
    lowest_seen = [AFFORDABLE]
    stop_sampling = threading.Event()

    def sample_balance() -> None:
        try:
            while not stop_sampling.is_set():
                available = CreditAccount.objects.get(team=person.team).available
                lowest_seen[0] = min(lowest_seen[0], available)
                stop_sampling.wait(0.005)
        finally:
            connection.close()  # this thread's own connection

    def submit(n: int) -> requests.Response:
        return requests.post(
            f"{base_url}/api/v1/jobs",
            json={"prompt": f"rush {n}", "count": 1},
            headers={"Authorization": f"Bearer {person.api_key}"},
            timeout=60,
        )

    sampler = threading.Thread(target=sample_balance)
    sampler.start()
    try:
        with ThreadPoolExecutor(max_workers=50) as pool:
            responses = list(pool.map(submit, range(REQUESTS)))
    finally:
        stop_sampling.set()
        sampler.join()
        web.stop()

    statuses = [response.status_code for response in responses]
    with capsys.disabled():
        print(
            f"\n[figure] {REQUESTS} concurrent submits: {statuses.count(202)} accepted, {statuses.count(402)} refused"
        )
    assert statuses.count(202) == AFFORDABLE
    assert statuses.count(402) == REQUESTS - AFFORDABLE
    refusal = next(response.json()["error"] for response in responses if response.status_code == 402)
    assert refusal["code"] == "INSUFFICIENT_CREDITS"
    assert refusal["details"]["required"] == 1 and refusal["details"]["available"] == 0
    assert lowest_seen[0] >= 0
    assert GenerationJob.objects.filter(team=person.team).count() == AFFORDABLE

    for job_id in GenerationJob.objects.filter(team=person.team).values_list("id", flat=True):
        assert wait_for_finish(job_id, timeout=60).status == "succeeded"
    account = CreditAccount.objects.get(team=person.team)
    assert (account.available, account.held) == (0, 0)  # 37 images delivered, 37 credits captured
    call_command("credits_audit")
