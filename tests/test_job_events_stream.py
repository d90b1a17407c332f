"""A job's server-sent event stream (`GET /api/v1/jobs/{id}/events`) against the real web process
(gunicorn with uvicorn workers, as in the Procfile) and a real worker: every step of a job in
order, a resume after a dropped connection, who may watch, previews, and the path without Redis
pub/sub (the embedded default), where streams read the events table and end after their lifetime.

A job is held back (its team's running cap at 0) until its stream is open, so every event of the
tests arrives on the open stream, none from the backlog a stream reads first.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime

import pytest
import requests

from accounts.models import Team
from generation.models import JobEvent
from generation.services import event_bus
from generation.services.dispatch import job_dispatch
from generation.streaming.messages import preview_url
from tests.conftest import Person, wait_for_finish
from tests.helpers import signed_in
from tests.processes import start_web, wait_until

pytestmark = [pytest.mark.worker, pytest.mark.django_db(transaction=True)]

JOB_EVENTS = ["job.started", "job.output", "job.output", "job.output", "job.output", "job.succeeded"]


@dataclass
class Message:
    event: str  # "comment" for a `: ...` line
    id: int | None = None
    data: dict | None = None


class Stream:
    """A client of one stream (plain `requests`, as an API client without EventSource would)."""

    def __init__(self, url: str, **headers: str) -> None:
        self.response = requests.get(url, headers=headers, stream=True, timeout=(5, 30))
        self.messages: list[Message] = []
        self._lines = self.response.iter_lines(chunk_size=None, decode_unicode=True)

    def __iter__(self) -> Iterator[Message]:
        fields: dict[str, str] = {}
        for line in self._lines:
            if line.startswith(":"):
                message = Message(event="comment")
            elif line:
                name, _, value = line.partition(":")
                fields[name] = value.removeprefix(" ")
                continue
            elif "event" in fields:
                message = Message(
                    event=fields["event"],
                    id=int(fields["id"]) if "id" in fields else None,
                    data=json.loads(fields["data"]),
                )
                fields = {}
            else:
                fields = {}  # the retry hint
                continue
            self.messages.append(message)
            yield message

    def next_message(self, event: str) -> Message:
        return next(message for message in self if message.event == event)

    def rest(self) -> list[Message]:
        """Everything until the server ends the stream."""
        for _ in self:
            pass
        return self.messages

    def close(self) -> None:
        self.response.close()

    @property
    def events(self) -> list[Message]:
        return [message for message in self.messages if message.id is not None]


@pytest.fixture(scope="module")
def stack(make_stack):
    return make_stack(LOCAL_PROVIDER_LATENCY_MS="500")


@pytest.fixture(scope="module")
def base_url(stack, log_dir) -> Iterator[str]:
    web, url = start_web(stack.env, log_dir)
    yield url
    web.stop()


def held_job(person: Person, count: int = 4, prompt: str = "a heron in fog") -> str:
    """A job that waits, queued, until `release`: its team may run no job for now."""
    Team.objects.filter(id=person.team.id).update(quota_running_jobs=0)
    response = person.client.post("/api/v1/jobs", {"prompt": prompt, "count": count}, format="json")
    assert response.status_code == 202, response.content
    return response.json()["id"]


def release(person: Person, job_id: str) -> None:
    Team.objects.filter(id=person.team.id).update(quota_running_jobs=None)
    job_dispatch(job_id)  # the wake-up its submit published found it held


def events_url(base_url: str, job_id: str) -> str:
    return f"{base_url}/api/v1/jobs/{job_id}/events"


def test_a_stream_sees_every_step_of_a_four_image_job_and_its_end_in_order(stack, base_url, alice):
    job_id = held_job(alice)
    stream = Stream(events_url(base_url, job_id), Authorization=f"Bearer {alice.api_key}")
    assert stream.response.status_code == 200
    assert stream.response.headers["Content-Type"] == "text/event-stream"
    assert "no-cache" in stream.response.headers["Cache-Control"]
    assert stream.response.headers["X-Accel-Buffering"] == "no"

    state = stream.next_message("state")
    assert state.id is None
    assert state.data == {
        "type": "state", "job_id": job_id, "status": "queued", "progress": {"completed": 0, "total": 4}, "error": None,
    }  # fmt: skip
    release(alice, job_id)
    messages = stream.rest()  # the server ends the stream after the job's end

    events = stream.events
    assert [event.event for event in events] == JOB_EVENTS
    assert [event.id for event in events] == list(JobEvent.objects.filter(job_id=job_id).values_list("id", flat=True))
    assert [event.data["progress"]["completed"] for event in events] == [0, 1, 2, 3, 4, 4]
    assert [event.data["status"] for event in events] == ["running"] * 5 + ["succeeded"]
    outputs = [event.data["output"] for event in events if event.event == "job.output"]
    assert [output["index"] for output in outputs] == [1, 2, 3, 4]
    image = requests.get(outputs[3]["url"], headers={"Authorization": f"Bearer {alice.api_key}"}, timeout=10)
    assert (image.status_code, image.headers["Content-Type"]) == (200, "image/png")
    assert messages[-1].event == "job.succeeded"
    assert wait_for_finish(job_id).status == "succeeded"


def test_a_dropped_stream_resumes_after_its_last_event_without_missing_or_repeating_one(stack, base_url, alice):
    job_id = held_job(alice, prompt="a kingfisher, four takes")
    auth = {"Authorization": f"Bearer {alice.api_key}"}
    first = Stream(events_url(base_url, job_id), **auth)
    first.next_message("state")
    release(alice, job_id)
    while len(first.events) < 3:  # started, image 1, image 2
        next(iter(first))
    first.close()  # the connection drops
    # Image 3 is made while nobody listens.
    wait_until(lambda: JobEvent.objects.filter(job_id=job_id).count() >= 5, timeout=30, message="image 3's event")

    second = Stream(events_url(base_url, job_id), **auth, **{"Last-Event-ID": str(first.events[-1].id)})
    second.rest()

    received = first.events + second.events
    assert [event.event for event in received] == JOB_EVENTS
    assert [event.id for event in received] == list(JobEvent.objects.filter(job_id=job_id).values_list("id", flat=True))
    assert [e.data["output"]["index"] for e in received if e.event == "job.output"] == [1, 2, 3, 4]

    # A client that cannot set headers says where it was in the query; a finished job's stream
    # sends what is left and ends.
    image_2 = received[2]
    third = Stream(f"{events_url(base_url, job_id)}?last_event_id={image_2.id}", **auth)
    assert [message.event for message in third.rest()] == ["state", "job.output", "job.output", "job.succeeded"]
    assert third.messages[0].data["status"] == "succeeded"
    # Nothing after the end: the state, then the stream ends at once.
    fourth = Stream(events_url(base_url, job_id), **auth, **{"Last-Event-ID": str(received[-1].id)})
    assert [message.event for message in fourth.rest()] == ["state"]


def test_only_the_jobs_team_may_watch_it(stack, base_url, alice, charlie):
    job_id = held_job(alice, count=1, prompt="a private owl")
    try:
        outsider = requests.get(
            events_url(base_url, job_id), headers={"Authorization": f"Bearer {charlie.api_key}"}, timeout=10
        )
        assert outsider.status_code == 404
        assert outsider.json()["error"]["code"] == "NOT_FOUND"
        anonymous = requests.get(events_url(base_url, job_id), timeout=10)
        assert anonymous.status_code == 401
        assert anonymous.json()["error"]["code"] == "NOT_AUTHENTICATED"
        assert anonymous.headers["WWW-Authenticate"].startswith("Bearer")
        # The studio's EventSource: the session's cookie, as for the rest of the API.
        session = signed_in(alice).cookies["sessionid"].value
        browser = Stream(events_url(base_url, job_id), Cookie=f"sessionid={session}", Accept="text/event-stream")
        assert browser.response.status_code == 200
        assert browser.next_message("state").data["status"] == "queued"
        browser.close()
        outsider_session = signed_in(charlie).cookies["sessionid"].value
        peeking = requests.get(events_url(base_url, job_id), cookies={"sessionid": outsider_session}, timeout=10)
        assert peeking.status_code == 404
    finally:
        release(alice, job_id)
    wait_for_finish(job_id)


def test_a_preview_announced_on_the_jobs_channel_reaches_its_streams_without_an_id(stack, base_url, alice):
    job_id = held_job(alice, count=1, prompt="a crane taking shape")
    stream = Stream(events_url(base_url, job_id), Authorization=f"Bearer {alice.api_key}")
    stream.next_message("state")
    at = datetime.now(UTC).isoformat()
    # A preview is not kept anywhere: one announced before the stream's process listens is gone.
    # So it is announced again and again (as a provider's partial images come) until one arrives.
    arrived = threading.Event()

    def announce() -> None:
        while not arrived.wait(0.2):
            event_bus.publish(job_id, {"preview": {"index": 0, "at": at}})

    announcer = threading.Thread(target=announce, daemon=True)
    announcer.start()
    try:
        preview = stream.next_message("preview")
    finally:
        arrived.set()
        announcer.join()
    assert preview.id is None
    assert preview.data == {
        "type": "preview", "job_id": job_id, "index": 1, "url": preview_url(job_id, at, base_url), "at": at,
    }  # fmt: skip
    release(alice, job_id)
    assert [message.event for message in stream.rest() if message.id is not None] == ["job.started", "job.output",
                                                                                       "job.succeeded"]  # fmt: skip


@pytest.fixture(scope="module")
def base_url_without_pubsub(stack, log_dir) -> Iterator[str]:
    """A web process on the embedded default's terms: no Redis anywhere in its settings (the
    worker still announces on Redis; this process does not listen). Streams read the events
    table, send a heartbeat after 0.3 s of silence and end after 2 s."""
    env = {
        **stack.env,
        "CACHE_URL": "",
        "CELERY_BROKER_URL": "filesystem://",
        "EVENTS_HEARTBEAT_SECONDS": "0.3",
        "EVENTS_STREAM_MAX_SECONDS": "2",
    }
    web, url = start_web(env, log_dir)
    yield url
    web.stop()


def test_without_pubsub_streams_read_the_table_end_after_their_lifetime_and_resume_to_the_end(
    stack, base_url_without_pubsub, alice
):
    job_id = held_job(alice, prompt="a stork over reeds")
    url = events_url(base_url_without_pubsub, job_id)
    auth = {"Authorization": f"Bearer {alice.api_key}"}
    quiet = Stream(url, **auth)
    # Nothing happens: heartbeats, and then the stream ends by itself, the job still queued.
    assert [message.event for message in quiet.rest()] == ["state", *["comment"] * (len(quiet.messages) - 1)]
    assert len(quiet.messages) >= 2
    release(alice, job_id)

    # A client that reconnects with the last id it got, as EventSource does, until the end.
    received: list[Message] = []
    streams = 0
    while not received or received[-1].event != "job.succeeded":
        last = {"Last-Event-ID": str(received[-1].id)} if received else {}
        received += Stream(url, **auth, **last).rest()
        received = [message for message in received if message.id is not None]
        streams += 1
        assert streams < 30, "the job should end within a minute"
    assert [event.event for event in received] == JOB_EVENTS
    assert [event.id for event in received] == list(JobEvent.objects.filter(job_id=job_id).values_list("id", flat=True))
