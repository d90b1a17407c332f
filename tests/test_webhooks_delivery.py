"""Webhook delivery (Standard Webhooks): signed, retried on what may pass, refused where it must
not go, durable across a sender's death, and fanned out only to the team whose job it is.

The first part calls the sending service in the test process against a real HTTP receiver; the
second runs the whole path on real processes (a job worker, beat and the webhooks process).
"""

from __future__ import annotations

import email.utils
import socket
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
import redis
from django.conf import settings
from django.db import connection
from django.utils import timezone
from standardwebhooks import Webhook

from generation.models import GenerationJob, JobEvent
from generation.services.pipeline import RunOutcome, job_run
from generation.services.submit import JobSpec, job_submit
from tests.fakes.webhook_receiver import Answer, Scripted, WebhookReceiver, new_secret
from tests.processes import (
    ManagedProcess,
    child_environment,
    free_port,
    start_beat,
    start_webhooks,
    start_worker,
    wait_until,
)
from webhooks import services
from webhooks.addresses import url_refusal
from webhooks.models import WebhookAttempt, WebhookDelivery, WebhookEndpoint
from webhooks.services import SendOutcome, deliveries_dispatch_due, delivery_resend, delivery_send

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def receiver() -> Iterator[WebhookReceiver]:
    server = WebhookReceiver().start()
    yield server
    server.stop()


@pytest.fixture
def fast_provider(settings):
    settings.LOCAL_PROVIDER_LATENCY_MS = 0
    settings.LOCAL_PROVIDER_TRANSIENT_FAILURE_RATE = 0.0


def endpoint_at(person, url: str, **fields) -> WebhookEndpoint:
    return WebhookEndpoint.objects.create(team=person.team, url=url, secret=new_secret(), **fields)


def finished_job(person, count: int = 1) -> GenerationJob:
    """A job of `count` images run to its end in this process (its events fanned out on the way)."""
    job = job_submit(team=person.team, user=person.user, spec=JobSpec(prompt="a paper boat", count=count)).job
    assert job_run(job_id=job.id) is RunOutcome.SUCCEEDED
    return GenerationJob.objects.get(id=job.id)


def delivery_of(endpoint: WebhookEndpoint, event_type: str = JobEvent.Type.SUCCEEDED) -> WebhookDelivery:
    return WebhookDelivery.objects.get(endpoint=endpoint, event__type=event_type)


def make_due(delivery: WebhookDelivery) -> None:
    """The wait before the delivery's next attempt is over (as the clock would make it)."""
    WebhookDelivery.objects.filter(id=delivery.id).update(next_attempt_at=timezone.now())


def attempts_of(delivery: WebhookDelivery) -> list[WebhookAttempt]:
    return list(WebhookAttempt.objects.filter(delivery=delivery).order_by("number"))


def public_links(answer: object) -> object:
    """An API answer as a delivery shows it: links start at PUBLIC_BASE_URL (no request there)."""
    if isinstance(answer, dict):
        return {key: public_links(value) for key, value in answer.items()}
    if isinstance(answer, list):
        return [public_links(value) for value in answer]
    if isinstance(answer, str) and answer.startswith("http://testserver/"):
        return settings.PUBLIC_BASE_URL + answer.removeprefix("http://testserver")
    return answer


# --- Where webhooks may go ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "words"),
    [
        ("http://127.0.0.1:8000/hooks", "127.0.0.1 is a loopback address"),
        ("https://localhost/hooks", "localhost resolves to 127.0.0.1, a loopback address"),
        ("http://10.0.0.7/hooks", "10.0.0.7 is a private address"),
        ("http://192.168.1.10/hooks", "is a private address"),
        ("http://169.254.169.254/latest/meta-data", "169.254.169.254 is a link-local address"),
        ("http://100.64.0.1/hooks", "a shared (carrier-grade NAT) address"),
        ("http://0.0.0.0/hooks", "0.0.0.0 is an unspecified address"),
        ("http://[::1]/hooks", "::1 is a loopback address"),
        ("http://[::ffff:127.0.0.1]/hooks", "an IPv6 form of 127.0.0.1, a loopback address"),
        ("http://[64:ff9b::a00:1]/hooks", "an IPv6 form of 10.0.0.1, a private address"),
        ("http://[ff02::1]/hooks", "a multicast address"),
        ("http://[fec0::1]/hooks", "fec0::1 is a site-local address"),
        ("http://192.0.0.8/hooks", "192.0.0.8 is a private address"),
        ("http://2130706433/hooks", "resolves to 127.0.0.1"),  # 127.0.0.1 written as one number
        ("ftp://hooks.example.com/", "Only http and https URLs can receive webhooks."),
        ("https://user:secret@8.8.8.8/hooks", "must not carry a user name or password"),
        ("http:///hooks", "The URL has no host."),
    ],
)
def test_url_refusal_answers_a_sentence_for_a_url_that_may_not_receive_webhooks(settings, url, words):
    settings.WEBHOOK_ALLOW_PRIVATE_ADDRESSES = False
    refusal = url_refusal(url)
    assert refusal is not None and words in refusal
    assert refusal.endswith(".")


def test_url_refusal_accepts_public_addresses(settings):
    settings.WEBHOOK_ALLOW_PRIVATE_ADDRESSES = False
    assert url_refusal("https://8.8.8.8/hooks?team=7") is None
    assert url_refusal("http://[2606:4700:4700::1111]:8443/hooks") is None


def test_with_private_addresses_allowed_only_the_url_itself_is_checked(settings):
    settings.WEBHOOK_ALLOW_PRIVATE_ADDRESSES = True
    assert url_refusal("http://127.0.0.1:8000/hooks") is None
    assert url_refusal("https://hooks.example.invalid/x") is None  # not looked up: any address will do
    assert url_refusal("gopher://127.0.0.1/") == "Only http and https URLs can receive webhooks."


def test_a_delivery_to_127_0_0_1_is_refused_when_private_addresses_are_not_allowed(
    settings, fast_provider, alice, receiver
):
    endpoint = endpoint_at(alice, f"{receiver.url}/hooks")
    finished_job(alice)
    delivery = delivery_of(endpoint)
    settings.WEBHOOK_ALLOW_PRIVATE_ADDRESSES = False

    assert delivery_send(delivery_id=delivery.id) == SendOutcome.FAILED

    delivery.refresh_from_db()
    assert delivery.status == WebhookDelivery.Status.FAILED  # at once: no retry could change it
    [attempt] = attempts_of(delivery)
    assert attempt.status_code is None
    assert attempt.error == "Refused: 127.0.0.1 is a loopback address; webhooks go only to public addresses."
    assert delivery.last_error == attempt.error
    assert receiver.received() == []
    endpoint.refresh_from_db()
    assert endpoint.consecutive_failures == 1 and endpoint.failing_since is not None


def test_a_name_is_looked_up_once_and_the_checked_address_is_the_one_connected_to(
    fast_provider, alice, receiver, monkeypatch
):
    """DNS rebinding: the name answers the receiver's address first, then another. The sender
    connects to the first answer (the one it checked) and never asks again; the name still goes
    in the Host header."""
    port = int(receiver.url.rsplit(":", 1)[1])
    real_getaddrinfo = socket.getaddrinfo
    lookups: list[str] = []

    def rebinding_dns(host, *args, **kwargs):  # type: ignore[no-untyped-def]
        if host != "hooks.rebind.test":
            return real_getaddrinfo(host, *args, **kwargs)
        lookups.append(host)
        address = "127.0.0.1" if len(lookups) == 1 else "10.255.255.1"
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (address, port))]

    monkeypatch.setattr(socket, "getaddrinfo", rebinding_dns)
    endpoint = endpoint_at(alice, f"http://hooks.rebind.test:{port}/hooks", events=[JobEvent.Type.SUCCEEDED])
    finished_job(alice)

    assert delivery_send(delivery_id=delivery_of(endpoint).id) == SendOutcome.DELIVERED
    assert lookups == ["hooks.rebind.test"]
    [request] = receiver.received("/hooks")
    assert request.headers["host"] == f"hooks.rebind.test:{port}"


# --- What is sent -------------------------------------------------------------------------------


def test_each_event_is_signed_and_carries_the_job_as_the_api_shows_it(fast_provider, alice, receiver):
    endpoint = endpoint_at(alice, f"{receiver.url}/hooks")
    job = finished_job(alice, count=2)
    deliveries = list(WebhookDelivery.objects.filter(endpoint=endpoint).order_by("event_id"))
    for delivery in deliveries:
        assert delivery_send(delivery_id=delivery.id) == SendOutcome.DELIVERED

    requests = receiver.received("/hooks")
    payloads = [Webhook(endpoint.secret).verify(request.body, request.headers) for request in requests]
    assert [payload["type"] for payload in payloads] == ["job.started", "job.output", "job.output", "job.succeeded"]
    events = list(JobEvent.objects.filter(job=job).order_by("id"))
    assert [request.headers["webhook-id"] for request in requests] == [f"evt_{event.id}" for event in events]
    assert all(request.headers["content-type"] == "application/json" for request in requests)
    assert all(request.headers["user-agent"].startswith("Atelier-Webhooks/") for request in requests)

    # The job is finished: every event shows it as GET /api/v1/jobs/{id} does, links included.
    shown = public_links(alice.client.get(f"/api/v1/jobs/{job.id}").json())
    assert [{key: value for key, value in p["data"].items() if key != "output"} for p in payloads] == [shown] * 4
    assert [p["data"]["output"] for p in payloads[1:3]] == shown["outputs"]
    assert [p["data"]["output"]["index"] for p in payloads[1:3]] == [1, 2]
    assert "output" not in payloads[0]["data"] and "output" not in payloads[3]["data"]
    assert [p["timestamp"] for p in payloads] == [
        event.created_at.isoformat().replace("+00:00", "Z") for event in events
    ]


def test_send_again_repeats_the_same_event_with_the_same_webhook_id(fast_provider, alice, receiver):
    endpoint = endpoint_at(alice, f"{receiver.url}/hooks", events=[JobEvent.Type.SUCCEEDED])
    finished_job(alice)
    delivery = delivery_of(endpoint)
    assert delivery_send(delivery_id=delivery.id) == SendOutcome.DELIVERED

    resent = delivery_resend(delivery_id=delivery.id)
    assert resent is not None
    assert (resent.status, resent.attempts) == (WebhookDelivery.Status.PENDING, 0)
    assert resent.dispatched_at is not None  # published for a sender to take
    assert delivery_send(delivery_id=delivery.id) == SendOutcome.DELIVERED

    first, second = receiver.received("/hooks")
    assert first.headers["webhook-id"] == second.headers["webhook-id"] == f"evt_{delivery.event_id}"
    assert [attempt.number for attempt in attempts_of(delivery)] == [1, 2]


def test_a_delivery_is_sent_once_however_many_wakeups_arrive(fast_provider, alice, receiver):
    endpoint = endpoint_at(alice, f"{receiver.url}/hooks", events=[JobEvent.Type.SUCCEEDED])
    finished_job(alice)
    delivery = delivery_of(endpoint)

    outcomes = []

    def sender() -> None:
        try:
            outcomes.append(delivery_send(delivery_id=delivery.id))
        finally:
            connection.close()  # the thread's own connection, or the test database stays in use

    senders = [threading.Thread(target=sender) for _ in range(4)]
    for sender in senders:
        sender.start()
    for sender in senders:
        sender.join()

    assert sorted(outcomes) == sorted([SendOutcome.DELIVERED] + [SendOutcome.NOT_CLAIMED] * 3)
    assert len(receiver.received("/hooks")) == 1
    assert delivery_send(delivery_id=delivery.id) == SendOutcome.NOT_CLAIMED  # delivered stays delivered
    assert len(receiver.received("/hooks")) == 1


def test_a_delivery_another_sender_holds_is_left_to_it(fast_provider, alice, receiver):
    endpoint = endpoint_at(alice, f"{receiver.url}/hooks", events=[JobEvent.Type.SUCCEEDED])
    finished_job(alice)
    delivery = delivery_of(endpoint)
    WebhookDelivery.objects.filter(id=delivery.id).update(lease_until=timezone.now() + timedelta(minutes=1))

    assert delivery_send(delivery_id=delivery.id) == SendOutcome.NOT_CLAIMED
    assert receiver.received() == []


# --- Retries ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "words"),
    [
        (410, "The receiver answered 410; only timeouts, connection errors, 5xx and 429 are retried."),
        (400, "The receiver answered 400; only timeouts, connection errors, 5xx and 429 are retried."),
        (301, "The receiver answered 301 (a redirect); redirects are not followed."),
    ],
)
def test_an_answer_other_than_5xx_or_429_fails_the_delivery_at_once(fast_provider, alice, receiver, status, words):
    endpoint = endpoint_at(alice, f"{receiver.url}/hooks", events=[JobEvent.Type.SUCCEEDED])
    receiver.script("/hooks", Scripted(Answer(status, {"error": "gone"}, headers={"Location": f"{receiver.url}/x"})))
    finished_job(alice)
    delivery = delivery_of(endpoint)

    assert delivery_send(delivery_id=delivery.id) == SendOutcome.FAILED

    delivery.refresh_from_db()
    assert (delivery.status, delivery.attempts, delivery.last_status_code) == ("failed", 1, status)
    assert delivery.last_error == words
    [attempt] = attempts_of(delivery)
    assert (attempt.status_code, attempt.error, attempt.response_body) == (status, words, '{"error": "gone"}')
    assert [request.path for request in receiver.received()] == ["/hooks"]  # nothing followed, nothing retried
    make_due(delivery)
    assert delivery_send(delivery_id=delivery.id) == SendOutcome.NOT_CLAIMED


def test_a_429_retry_after_longer_than_the_schedule_is_honoured(settings, fast_provider, alice, receiver):
    settings.WEBHOOK_RETRY_SCHEDULE = [1.0, 1.0]
    endpoint = endpoint_at(alice, f"{receiver.url}/hooks", events=[JobEvent.Type.SUCCEEDED])
    in_two_minutes = email.utils.format_datetime(datetime.now(tz=UTC) + timedelta(minutes=2), usegmt=True)
    receiver.script(
        "/hooks",
        Scripted(Answer(429, headers={"Retry-After": "90"})),
        Scripted(Answer(429, headers={"Retry-After": in_two_minutes})),
        Scripted(Answer(429, headers={"Retry-After": "99999999"})),
    )
    finished_job(alice)
    delivery = delivery_of(endpoint)

    waits = []
    for _ in range(2):
        assert delivery_send(delivery_id=delivery.id) == SendOutcome.RETRY_SCHEDULED
        delivery.refresh_from_db()
        waits.append((delivery.next_attempt_at - attempts_of(delivery)[-1].started_at).total_seconds())
        make_due(delivery)
    assert 90 <= waits[0] < 100  # seconds
    assert 100 <= waits[1] <= 121  # an HTTP date (whole seconds): about two minutes away
    assert delivery.status == "pending" and delivery.last_status_code == 429

    settings.WEBHOOK_RETRY_SCHEDULE = [1.0, 1.0, 1.0]
    assert delivery_send(delivery_id=delivery.id) == SendOutcome.RETRY_SCHEDULED
    delivery.refresh_from_db()
    wait = delivery.next_attempt_at - attempts_of(delivery)[-1].started_at
    assert timedelta(hours=5) < wait <= timedelta(seconds=services.MAX_RETRY_AFTER_SECONDS + 1)  # capped


def test_a_retry_after_of_other_digits_than_ascii_is_ignored_and_the_attempt_recorded(
    settings, fast_provider, alice, receiver
):
    settings.WEBHOOK_RETRY_SCHEDULE = [60.0]
    endpoint = endpoint_at(alice, f"{receiver.url}/hooks", events=[JobEvent.Type.SUCCEEDED])
    # "²" is a digit to str.isdigit, not to float(): read as a number, it crashed the sender
    # before the attempt was recorded, and the sweeper woke the delivery again without end.
    receiver.script("/hooks", Scripted(Answer(503, headers={"Retry-After": "\u00b2"})))
    finished_job(alice)
    delivery = delivery_of(endpoint)

    assert delivery_send(delivery_id=delivery.id) == SendOutcome.RETRY_SCHEDULED
    delivery.refresh_from_db()
    [attempt] = attempts_of(delivery)
    assert (delivery.status, delivery.last_status_code, attempt.status_code) == ("pending", 503, 503)
    assert 55 <= (delivery.next_attempt_at - attempt.started_at).total_seconds() <= 65  # the schedule's wait
    assert WebhookEndpoint.objects.get(id=endpoint.id).consecutive_failures == 1


class DeletingReceiver(WebhookReceiver):
    """A receiver whose team deletes the endpoint while the request is on its way."""

    def default_answer(self, request):  # type: ignore[no-untyped-def]
        try:
            WebhookEndpoint.objects.filter(url__endswith="/hooks").delete()
        finally:
            connection.close()  # the server thread's own connection
        return super().default_answer(request)


def test_an_endpoint_deleted_during_an_attempt_ends_the_attempt_quietly(fast_provider, alice):
    server = DeletingReceiver().start()
    try:
        endpoint = endpoint_at(alice, f"{server.url}/hooks", events=[JobEvent.Type.SUCCEEDED])
        finished_job(alice)
        delivery = delivery_of(endpoint)

        assert delivery_send(delivery_id=delivery.id) == SendOutcome.DELIVERED
    finally:
        server.stop()
    assert len(server.received("/hooks")) == 1
    assert not WebhookDelivery.objects.filter(id=delivery.id).exists()
    assert not WebhookAttempt.objects.exists()


def test_no_answer_is_retried_on_the_schedule_and_the_schedule_used_up_fails_it(
    settings, fast_provider, alice, receiver
):
    settings.WEBHOOK_TIMEOUT_SECONDS = 0.5
    settings.WEBHOOK_RETRY_SCHEDULE = [0.0, 0.0]
    endpoint = endpoint_at(alice, f"{receiver.url}/hooks", events=[JobEvent.Type.SUCCEEDED])
    receiver.script("/hooks", Scripted(Answer(200), hang_seconds=3), Scripted(Answer(503)), Scripted(Answer(500)))
    finished_job(alice)
    delivery = delivery_of(endpoint)

    outcomes = [delivery_send(delivery_id=delivery.id) for _ in range(3)]

    assert outcomes == [SendOutcome.RETRY_SCHEDULED, SendOutcome.RETRY_SCHEDULED, SendOutcome.FAILED]
    delivery.refresh_from_db()
    assert (delivery.status, delivery.attempts) == ("failed", 3)
    assert delivery.last_error == "The receiver answered 500. Gave up after 3 attempts."
    errors = [(attempt.status_code, attempt.error) for attempt in attempts_of(delivery)]
    assert errors[0][0] is None and errors[0][1].startswith("No answer: timed out")
    assert errors[1:] == [(503, "The receiver answered 503."), (500, "The receiver answered 500.")]


def test_a_refused_connection_is_retried(settings, fast_provider, alice):
    settings.WEBHOOK_RETRY_SCHEDULE = [30.0]
    endpoint = endpoint_at(alice, f"http://127.0.0.1:{free_port()}/hooks", events=[JobEvent.Type.SUCCEEDED])
    finished_job(alice)
    delivery = delivery_of(endpoint)

    assert delivery_send(delivery_id=delivery.id) == SendOutcome.RETRY_SCHEDULED
    delivery.refresh_from_db()
    assert delivery.last_error == "No answer: 127.0.0.1 refused the connection."
    assert delivery.next_attempt_at > timezone.now() + timedelta(seconds=20)
    assert delivery.dispatched_at is None  # for the sweeper to publish when it is due


def test_a_receiver_that_drips_its_answer_is_cut_off(settings, fast_provider, alice):
    """Each byte arrives within the read timeout, but the whole answer would take minutes."""
    settings.WEBHOOK_TIMEOUT_SECONDS = 1.0  # for each read; 2 s for the whole answer
    listener = socket.create_server(("127.0.0.1", 0))
    stop = threading.Event()

    def drip() -> None:
        connection, _ = listener.accept()
        with connection:
            connection.recv(65536)
            for byte in b"HTTP/1.1 200 OK\r\nX-Slow: " + b"." * 1000:
                if stop.wait(0.1):
                    return
                try:
                    connection.sendall(bytes([byte]))
                except OSError:
                    return

    dripper = threading.Thread(target=drip, daemon=True)
    dripper.start()
    endpoint = endpoint_at(
        alice, f"http://127.0.0.1:{listener.getsockname()[1]}/hooks", events=[JobEvent.Type.SUCCEEDED]
    )
    finished_job(alice)
    delivery = delivery_of(endpoint)
    try:
        assert delivery_send(delivery_id=delivery.id) == SendOutcome.RETRY_SCHEDULED
    finally:
        stop.set()
        listener.close()
    [attempt] = attempts_of(delivery)
    assert attempt.error == "No answer: timed out: the answer did not complete within 2 s."


# --- Endpoint health ----------------------------------------------------------------------------


def test_an_endpoint_that_keeps_failing_is_disabled_and_gets_nothing_more(settings, fast_provider, alice, receiver):
    settings.WEBHOOK_DISABLE_AFTER_FAILURES = 3
    settings.WEBHOOK_DISABLE_AFTER_SECONDS = 3600
    settings.WEBHOOK_RETRY_SCHEDULE = [0.0] * 10
    endpoint = endpoint_at(alice, f"{receiver.url}/hooks")
    receiver.script("/hooks", *[Scripted(Answer(500))] * 10)
    finished_job(alice, count=2)
    delivery = delivery_of(endpoint)

    # Five failures in a few seconds: many, but not for long (a bad minute, not a dead endpoint).
    for _ in range(5):
        assert delivery_send(delivery_id=delivery.id) == SendOutcome.RETRY_SCHEDULED
    endpoint.refresh_from_db()
    assert endpoint.enabled and endpoint.consecutive_failures == 5

    # Failing since over an hour ago: the next failure disables it.
    WebhookEndpoint.objects.filter(id=endpoint.id).update(failing_since=timezone.now() - timedelta(hours=2))
    assert delivery_send(delivery_id=delivery.id) == SendOutcome.RETRY_SCHEDULED
    endpoint.refresh_from_db()
    assert not endpoint.enabled
    assert endpoint.disabled_reason == WebhookEndpoint.DisabledReason.FAILING
    assert endpoint.disabled_at is not None

    # Its other deliveries, and this one when due, are not sent.
    sent = len(receiver.received())
    for other in WebhookDelivery.objects.filter(endpoint=endpoint):
        outcome = delivery_send(delivery_id=other.id)
        assert outcome in (SendOutcome.ENDPOINT_DISABLED, SendOutcome.NOT_CLAIMED)
    assert len(receiver.received()) == sent
    delivery.refresh_from_db()
    assert delivery.status == "failed"
    assert delivery.last_error == "Not sent: the endpoint is disabled (disabled after failing deliveries)."


def test_a_success_ends_an_endpoints_failure_streak(settings, fast_provider, alice, receiver):
    settings.WEBHOOK_RETRY_SCHEDULE = [0.0]
    endpoint = endpoint_at(alice, f"{receiver.url}/hooks", events=[JobEvent.Type.SUCCEEDED])
    receiver.script("/hooks", Scripted(Answer(502)))
    finished_job(alice)
    delivery = delivery_of(endpoint)
    assert delivery_send(delivery_id=delivery.id) == SendOutcome.RETRY_SCHEDULED
    endpoint.refresh_from_db()
    assert endpoint.consecutive_failures == 1 and endpoint.failing_since is not None

    assert delivery_send(delivery_id=delivery.id) == SendOutcome.DELIVERED
    endpoint.refresh_from_db()
    assert (endpoint.consecutive_failures, endpoint.failing_since) == (0, None)
    assert endpoint.last_success_at is not None


# --- The sweeper --------------------------------------------------------------------------------


@pytest.fixture
def empty_queue() -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(settings.CELERY_BROKER_URL)
    client.delete("webhooks")
    yield client
    client.delete("webhooks")


def test_the_sweeper_publishes_what_is_due_and_has_no_live_wakeup(fast_provider, alice, receiver, empty_queue):
    endpoint = endpoint_at(alice, f"{receiver.url}/hooks")
    finished_job(alice, count=2)  # four deliveries, published after their commits
    started, first, second, succeeded = WebhookDelivery.objects.filter(endpoint=endpoint).order_by("event_id")
    now = timezone.now()
    WebhookDelivery.objects.filter(id=started.id).update(dispatched_at=None)  # its publish failed
    WebhookDelivery.objects.filter(id=first.id).update(dispatched_at=now - timedelta(minutes=5))  # message lost
    WebhookDelivery.objects.filter(id=second.id).update(dispatched_at=None, lease_until=now + timedelta(minutes=1))
    WebhookDelivery.objects.filter(id=succeeded.id).update(dispatched_at=None, next_attempt_at=now + timedelta(hours=1))
    empty_queue.delete("webhooks")

    assert deliveries_dispatch_due() == 2
    assert empty_queue.llen("webhooks") == 2
    assert deliveries_dispatch_due() == 0  # just published: their messages are live
    # A retry that comes due is published although its first message was recent.
    WebhookDelivery.objects.filter(id=succeeded.id).update(next_attempt_at=timezone.now())
    assert deliveries_dispatch_due() == 1


def test_the_sweeper_adds_nothing_while_the_queue_holds_a_batch(
    fast_provider, alice, receiver, empty_queue, monkeypatch
):
    monkeypatch.setattr(services, "SWEEP_BATCH", 3)
    endpoint = endpoint_at(alice, f"{receiver.url}/hooks")
    finished_job(alice, count=3)  # five deliveries
    WebhookDelivery.objects.filter(endpoint=endpoint).update(dispatched_at=None)
    empty_queue.delete("webhooks")

    assert deliveries_dispatch_due() == 3  # a batch
    WebhookDelivery.objects.filter(endpoint=endpoint).update(dispatched_at=None)
    assert deliveries_dispatch_due() == 0  # the senders are away: the batch still waits
    assert empty_queue.llen("webhooks") == 3


# --- On real processes --------------------------------------------------------------------------


class Senders:
    """A job worker, beat and the webhooks process, against the test database and broker."""

    def __init__(self, env: dict[str, str], log_dir) -> None:  # type: ignore[no-untyped-def]
        self.env = env
        self.log_dir = log_dir
        self.started: list[ManagedProcess] = []
        self.worker = self._keep(start_worker(env, log_dir, name="webhook-test-worker"))
        self.beat = self._keep(start_beat(env, log_dir))
        self.webhooks = self._keep(start_webhooks(env, log_dir))

    def _keep(self, process: ManagedProcess) -> ManagedProcess:
        self.started.append(process)
        return process

    def restart_webhooks(self) -> None:
        self.webhooks = self._keep(start_webhooks(self.env, self.log_dir))

    def stop(self) -> None:
        for process in self.started:
            process.stop()


@pytest.fixture(scope="module")
def senders(django_db_setup, django_db_blocker, log_dir) -> Iterator[Senders]:  # noqa: ARG001
    with django_db_blocker.unblock():
        env = child_environment()
    redis.Redis.from_url(env["CELERY_BROKER_URL"]).flushdb()  # an earlier test's wake-ups
    stack = None
    try:
        stack = Senders(env, log_dir)
        yield stack
    finally:
        if stack is not None:
            stack.stop()


def submit(person, count: int) -> str:
    response = person.client.post("/api/v1/jobs", {"prompt": "sea glass earrings", "count": count}, format="json")
    assert response.status_code == 202
    return response.json()["id"]


def all_delivered(job_id: str, expected: int) -> bool:
    deliveries = WebhookDelivery.objects.filter(event__job_id=job_id)
    return deliveries.count() == expected and not deliveries.exclude(status="delivered").exists()


@pytest.mark.worker
def test_a_three_image_job_sends_its_start_each_image_and_its_end_to_its_team_only(senders, alice, charlie, receiver):
    ours = endpoint_at(alice, f"{receiver.url}/alice")
    theirs = endpoint_at(charlie, f"{receiver.url}/charlie")
    job_id = submit(alice, count=3)

    wait_until(lambda: all_delivered(job_id, 5), timeout=60, message="five deliveries delivered")

    payloads = receiver.verified(ours.secret, "/alice")
    assert sorted(payload["type"] for payload in payloads) == sorted(
        ["job.started", "job.output", "job.output", "job.output", "job.succeeded"]
    )
    shown = alice.client.get(f"/api/v1/jobs/{job_id}").json()
    for payload in payloads:
        assert payload["data"]["id"] == job_id
        assert set(payload["data"]) - {"output"} == set(shown)
    outputs = sorted((p["data"]["output"] for p in payloads if p["type"] == "job.output"), key=lambda o: o["index"])
    assert [output["index"] for output in outputs] == [1, 2, 3]
    assert [output["url"] for output in outputs] == [public_links(output["url"]) for output in shown["outputs"]]
    [end] = [payload for payload in payloads if payload["type"] == "job.succeeded"]
    assert end["data"] == public_links(shown)
    assert receiver.received("/charlie") == []  # another team's endpoint hears nothing of Alice's job
    assert WebhookDelivery.objects.filter(endpoint=theirs).count() == 0


@pytest.mark.worker
def test_a_receiver_answering_500_twice_gets_the_webhook_on_the_third_try(senders, alice, receiver):
    endpoint = endpoint_at(alice, f"{receiver.url}/flaky", events=[JobEvent.Type.SUCCEEDED])
    receiver.script("/flaky", Scripted(Answer(500)), Scripted(Answer(500)))
    job_id = submit(alice, count=1)

    wait_until(lambda: all_delivered(job_id, 1), timeout=60, message="the delivery delivered")

    delivery = delivery_of(endpoint)
    assert delivery.attempts == 3
    assert [attempt.status_code for attempt in attempts_of(delivery)] == [500, 500, 200]
    requests = receiver.received("/flaky")
    assert len({request.headers["webhook-id"] for request in requests}) == 1  # one event, three tries
    assert [Webhook(endpoint.secret).verify(r.body, r.headers)["type"] for r in requests] == ["job.succeeded"] * 3


@pytest.mark.worker
@pytest.mark.parametrize("wakeups", ["kept by the broker", "lost with the broker"])
def test_webhooks_of_a_job_that_ended_while_the_senders_were_dead_arrive_once_each(senders, alice, receiver, wakeups):
    endpoint = endpoint_at(alice, f"{receiver.url}/hooks")
    senders.webhooks.kill()  # SIGKILL: as a crash or a lost machine
    job_id = submit(alice, count=2)
    wait_until(lambda: GenerationJob.objects.get(id=job_id).is_finished, timeout=60, message="the job to finish")
    assert WebhookDelivery.objects.filter(endpoint=endpoint, status="pending").count() == 4
    assert receiver.received() == []
    if wakeups == "lost with the broker":
        redis.Redis.from_url(senders.env["CELERY_BROKER_URL"]).delete("webhooks")

    senders.restart_webhooks()

    wait_until(lambda: all_delivered(job_id, 4), timeout=60, message="four deliveries delivered")
    events = JobEvent.objects.filter(job_id=job_id).order_by("id")
    assert receiver.webhook_ids("/hooks") == {f"evt_{event.id}": 1 for event in events}
    assert len(receiver.verified(endpoint.secret, "/hooks")) == 4
