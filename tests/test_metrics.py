"""The operators' Prometheus endpoint: who may read it, and what a scrape from the web side shows of
the workers' observations (multiprocess files) and of the database (queue, running, finished)."""

from __future__ import annotations

import ipaddress
import uuid
from datetime import timedelta
from pathlib import Path

import pytest
import requests
from django.conf import settings as django_settings
from django.test import Client
from django.utils import timezone
from prometheus_client.parser import text_string_to_metric_families

from generation.models import GenerationJob
from tests.conftest import wait_for_finish, wait_for_job
from tests.factories import GenerationJobFactory
from tests.helpers import rescue_pass
from tests.processes import start_web

TOKEN = "metrics-token-" + "x" * 32
HANG_WORD = "wedged"


def samples(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """Every sample of a scrape, by name and labels."""
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(scrape: dict, name: str, **labels: object) -> float | None:
    return scrape.get((name, frozenset((key, str(label)) for key, label in labels.items())))


def scrape_in_process(**headers: str) -> dict:
    response = Client().get("/metrics", HTTP_AUTHORIZATION=f"Bearer {TOKEN}", **headers)
    assert response.status_code == 200, response.content
    return samples(response.content.decode())


# --- Who may read the metrics -------------------------------------------------------------------


@pytest.fixture
def metrics_settings(settings, db):  # noqa: ARG001 - the collector reads the database
    settings.METRICS_TOKEN = ""
    settings.METRICS_ALLOWED_IPS = []
    return settings


def test_metrics_are_off_without_a_token_or_an_allow_list(metrics_settings):
    assert Client().get("/metrics").status_code == 404
    assert Client().get("/metrics", HTTP_AUTHORIZATION="Bearer anything").status_code == 404


def test_metrics_need_the_bearer_token(metrics_settings):
    metrics_settings.METRICS_TOKEN = TOKEN
    client = Client()

    missing = client.get("/metrics")
    assert missing.status_code == 401
    assert missing["WWW-Authenticate"] == 'Bearer realm="metrics"'
    assert client.get("/metrics", HTTP_AUTHORIZATION=f"Bearer {TOKEN[:-1]}").status_code == 401
    assert client.get("/metrics", HTTP_AUTHORIZATION=f"Basic {TOKEN}").status_code == 401
    assert b"atelier_" not in missing.content

    served = client.get("/metrics", HTTP_AUTHORIZATION=f"Bearer {TOKEN}")
    assert served.status_code == 200
    assert served["Content-Type"].startswith("text/plain; version=")
    assert "no-store" in served["Cache-Control"]
    assert "sessionid" not in served.cookies and "csrftoken" not in served.cookies
    assert b"# TYPE atelier_jobs_finished_total counter" in served.content


def test_metrics_refuse_an_address_outside_the_allow_list(metrics_settings):
    metrics_settings.METRICS_ALLOWED_IPS = [ipaddress.ip_network("10.0.0.0/8"), ipaddress.ip_network("2001:db8::5")]
    client = Client()

    assert client.get("/metrics", REMOTE_ADDR="192.0.2.1").status_code == 403
    assert client.get("/metrics", REMOTE_ADDR="10.1.2.3").status_code == 200
    # An IPv6 client is known by its /64 (the project's client-address rule), so an entry allows its /64.
    assert client.get("/metrics", REMOTE_ADDR="2001:db8::9").status_code == 200
    assert client.get("/metrics", REMOTE_ADDR="2001:db8:0:1::5").status_code == 403
    # X-Forwarded-For counts only from trusted proxies (TRUSTED_PROXY_COUNT), as for the rate limits.
    forged = {"REMOTE_ADDR": "192.0.2.1", "HTTP_X_FORWARDED_FOR": "10.1.2.3"}
    assert client.get("/metrics", **forged).status_code == 403
    metrics_settings.REST_FRAMEWORK = {**metrics_settings.REST_FRAMEWORK, "NUM_PROXIES": 1}
    assert client.get("/metrics", **forged).status_code == 200


def test_with_both_checks_set_both_must_pass(metrics_settings):
    metrics_settings.METRICS_TOKEN = TOKEN
    metrics_settings.METRICS_ALLOWED_IPS = [ipaddress.ip_network("127.0.0.1")]
    client = Client()

    assert client.get("/metrics", REMOTE_ADDR="127.0.0.1").status_code == 401
    assert client.get("/metrics", REMOTE_ADDR="192.0.2.1", HTTP_AUTHORIZATION=f"Bearer {TOKEN}").status_code == 403
    assert client.get("/metrics", REMOTE_ADDR="127.0.0.1", HTTP_AUTHORIZATION=f"Bearer {TOKEN}").status_code == 200


# --- What a scrape shows --------------------------------------------------------------------------


def test_a_rescue_pass_counts_what_it_did(metrics_settings, alice):
    metrics_settings.METRICS_TOKEN = TOKEN
    before = scrape_in_process()
    job = GenerationJobFactory(team=alice.team, created_by=alice.user)
    GenerationJob.objects.filter(id=job.id).update(
        status="running",
        lease_owner="dead-token",
        lease_worker="dead-worker",
        lease_expires_at=timezone.now() - timedelta(seconds=10),
        attempts=1,
        started_at=timezone.now(),
    )

    assert rescue_pass().requeued == 1

    after = scrape_in_process()
    for kind, added in {"requeued": 1, "failed": 0, "canceled": 0, "redispatched": 0}.items():
        assert (value(after, "atelier_rescues_total", kind=kind) or 0) - (
            value(before, "atelier_rescues_total", kind=kind) or 0
        ) == added, kind
    assert value(after, "atelier_jobs_queued", team=alice.team.id, provider="local") == 1


@pytest.fixture(scope="module")
def stack(make_stack):
    """A worker, rescuer and beat writing their metrics to a folder of this module's own, empty at
    start, so the scrape's figures are this module's alone."""
    folder = Path(django_settings.TEST_VAR_DIR) / f"prometheus-{uuid.uuid4().hex}"
    folder.mkdir()
    return make_stack(
        PROMETHEUS_MULTIPROC_DIR=str(folder),
        METRICS_TOKEN=TOKEN,
        LOCAL_PROVIDER_LATENCY_MS="50",
        LOCAL_PROVIDER_HANG_WORD=HANG_WORD,
        LOCAL_PROVIDER_HANG_SECONDS="20",
    )


@pytest.mark.worker
@pytest.mark.django_db(transaction=True)
def test_scrape_from_the_web_shows_the_workers_observations_and_the_database_gauges(
    stack, alice, charlie, log_dir, request
):
    web, base_url = start_web(stack.env, log_dir)
    request.addfinalizer(web.stop)

    def scrape() -> dict:
        response = requests.get(f"{base_url}/metrics", headers={"Authorization": f"Bearer {TOKEN}"}, timeout=10)
        assert response.status_code == 200, response.text
        return samples(response.text)

    def submit(prompt: str, count: int) -> str:
        response = alice.client.post("/api/v1/jobs", {"prompt": prompt, "count": count}, format="json")
        assert response.status_code == 202, response.content
        return response.json()["id"]

    made = wait_for_finish(submit("two chrome tips", 2))
    refused = wait_for_finish(submit("a forbidden garden", 3))
    assert (made.status, refused.status, refused.error_code) == ("succeeded", "failed", "CONTENT_POLICY")
    # Paused jobs (in backoff) are queued but nobody takes them: the queue depth holds still.
    later = timezone.now() + timedelta(hours=1)
    GenerationJobFactory.create_batch(2, team=alice.team, created_by=alice.user, run_after=later)
    GenerationJobFactory(team=charlie.team, created_by=charlie.user, run_after=later)
    # A job whose first provider call hangs stays running until it is canceled.
    hung = submit(f"a {HANG_WORD} pearl set", 3)
    wait_for_job(hung, lambda job: job.status == "running")

    during = scrape()
    assert value(during, "atelier_jobs_running", provider="local") == 1
    assert value(during, "atelier_jobs_queued", team=alice.team.id, provider="local") == 2
    assert value(during, "atelier_jobs_queued", team=charlie.team.id, provider="local") == 1
    assert value(during, "atelier_metrics_database_up") == 1

    assert alice.client.post(f"/api/v1/jobs/{hung}/cancel").status_code == 200
    assert wait_for_finish(hung).status == "canceled"

    after = scrape()
    # The database's figures.
    assert value(after, "atelier_jobs_running", provider="local") == 0
    for status in ("succeeded", "failed", "canceled"):
        assert value(after, "atelier_jobs_finished_total", status=status) == 1, status
    # The worker's observations, written by its process and summed by the web's.
    assert value(after, "atelier_image_seconds_count", provider="local", model="atelier-sketch-1") == 2
    assert value(after, "atelier_provider_errors_total", provider="local", code="CONTENT_POLICY") == 1
    assert value(after, "atelier_job_time_to_start_seconds_count", provider="local") == 3
    # ...and the rescuer's: its passes ran (every kind is counted from the first pass), no job was lost.
    assert value(after, "atelier_rescues_total", kind="requeued") == 0
    assert value(after, "atelier_rescues_total", kind="failed") == 0
    assert value(after, "atelier_rescues_total", kind="redispatched") is not None
