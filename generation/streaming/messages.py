"""What a job's event stream says, in the server-sent events format, read from the outbox.

    retry: 3000

    event: state
    data: {"type": "state", "job_id": "…", "status": "running", "progress": {"completed": 1, "total": 4}, "error": null}

    id: 812
    event: job.output
    data: {"type": "job.output", "job_id": "…", "status": "running", "progress": {"completed": 2, "total": 4},
           "error": null, "created_at": "…", "output": {"index": 2, "url": "https://…/outputs/2", …}}

    event: preview
    data: {"type": "preview", "job_id": "…", "index": 3, "url": "https://…", "at": "…"}

    : keep-alive

Each event of the outbox (`JobEvent`: job.started, job.output, job.succeeded, job.failed,
job.canceled) goes out with its row's id, so a client that reconnects sends `Last-Event-ID` and
gets exactly the events after it. `state` (the job as it is when the stream opens) and
`preview` (a partial image, announced on Redis only) carry no id: they are not events of the
outbox, and a resume must not skip past one of those. An event says what was true when it
happened (its row's data); the output of a `job.output` is the API's representation of it.

Links are made absolute per stream (`origin`), as the API makes them per request: the reads
here are shared by every stream of a job, whatever host each client asked for.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode
from uuid import UUID

from django.http import StreamingHttpResponse
from django.urls import NoReverseMatch
from rest_framework.fields import DateTimeField

from generation.api.serializers import OutputSerializer
from generation.models import GeneratedOutput, GenerationJob, JobEvent
from generation.routes import job_route

# How long a client waits before it reconnects after a stream ended (EventSource's `retry`).
RETRY_MILLISECONDS = 3000
TERMINAL_TYPES = frozenset({JobEvent.Type.SUCCEEDED, JobEvent.Type.FAILED, JobEvent.Type.CANCELED})
# The output's links, made absolute per stream.
_LINKS = ("url", "poster_url")


def sse(*, event: str, data: dict[str, Any], id: int | None = None) -> bytes:
    """One message. JSON without indentation holds no line break, so `data` is one line."""
    head = f"id: {id}\n" if id is not None else ""
    return f"{head}event: {event}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n".encode()


def comment(text: str) -> bytes:
    """A line the client ignores: a heartbeat keeps proxies from closing an idle stream."""
    return f": {text}\n\n".encode()


def retry_hint() -> bytes:
    return f"retry: {RETRY_MILLISECONDS}\n\n".encode()


@dataclass(frozen=True)
class StreamEvent:
    """One row of the outbox as a stream says it; `body` holds links relative to the site."""

    id: int
    job_id: str
    type: str
    body: dict[str, Any]

    @property
    def terminal(self) -> bool:
        return self.type in TERMINAL_TYPES

    def render(self, origin: str) -> bytes:
        body = self.body
        output = body.get("output")
        if output:
            body = {**body, "output": _with_origin(output, origin)}
        return sse(id=self.id, event=self.type, data=body)


def _with_origin(output: dict[str, Any], origin: str) -> dict[str, Any]:
    return {
        name: origin + value if name in _LINKS and isinstance(value, str) and value.startswith("/") else value
        for name, value in output.items()
    }


def events_after(cursors: Mapping[str, int]) -> dict[str, list[StreamEvent]]:
    """The events of each job after its cursor (an event id), oldest first: one query for the
    events of every job (the (job, id) index), one more for the outputs they announce.

    A job has a dozen events at most (its start, one per image, its end), so reading every job's
    events after the lowest cursor and dropping the rest here costs less than a query per job.
    """
    if not cursors:
        return {}
    rows: list[dict[str, Any]] = [
        dict(row)
        for row in JobEvent.objects.filter(job_id__in=list(cursors), id__gt=min(cursors.values()))
        .order_by("id")
        .values("id", "job_id", "type", "output_index", "data", "created_at")
        if row["id"] > cursors[str(row["job_id"])]
    ]
    outputs = _announced_outputs(rows)
    found: dict[str, list[StreamEvent]] = {}
    for row in rows:
        job_id = str(row["job_id"])
        found.setdefault(job_id, []).append(_stream_event(row, outputs.get((job_id, row["output_index"]))))
    return found


def job_events_after(job_id: UUID | str, after: int) -> list[StreamEvent]:
    return events_after({str(job_id): after}).get(str(job_id), [])


def _announced_outputs(rows: Iterable[dict[str, Any]]) -> dict[tuple[str, int | None], dict[str, Any]]:
    wanted = {(str(row["job_id"]), row["output_index"]) for row in rows if row["type"] == JobEvent.Type.OUTPUT}
    if not wanted:
        return {}
    outputs = GeneratedOutput.objects.filter(
        job_id__in={job_id for job_id, _ in wanted}, index__in={index for _, index in wanted}
    )
    # No request: the serializer gives paths, which each stream prefixes with its own origin.
    return {
        (str(output.job_id), output.index): dict(OutputSerializer(output).data)
        for output in outputs
        if (str(output.job_id), output.index) in wanted
    }


def _stream_event(row: dict[str, Any], output: dict[str, Any] | None) -> StreamEvent:
    data = row["data"] or {}
    body: dict[str, Any] = {
        "type": row["type"],
        "job_id": str(row["job_id"]),
        "status": data.get("status"),
        "progress": data.get("progress"),
        "error": data.get("error"),
        "created_at": DateTimeField().to_representation(row["created_at"]),
    }
    if row["type"] == JobEvent.Type.OUTPUT:
        body["output"] = output
    return StreamEvent(id=row["id"], job_id=str(row["job_id"]), type=row["type"], body=body)


def state_message(job: GenerationJob) -> bytes:
    """The job as it is now: the first message of every stream."""
    error = {"code": job.error_code, "message": job.error_message} if job.error_code else None
    return sse(
        event="state",
        data={
            "type": "state",
            "job_id": str(job.id),
            "status": job.status,
            "progress": {"completed": job.completed_outputs, "total": job.total_outputs},
            "error": error,
        },
    )


def preview_message(job_id: str, preview: Any, origin: str) -> bytes | None:
    """A preview announced on the job's channel (`{"preview": {"index": i, "at": iso}}`, the
    0-based index of the image in progress) as an `event: preview`; None for a malformed one."""
    if not isinstance(preview, dict):
        return None
    index, at = preview.get("index"), preview.get("at")
    if not isinstance(index, int) or isinstance(index, bool) or index < 0 or not isinstance(at, str):
        return None
    return sse(
        event="preview",
        data={
            "type": "preview",
            "job_id": job_id,
            "index": index + 1,
            "url": preview_url(job_id, at, origin),
            "at": at,
        },
    )


def preview_url(job_id: str, at: str, origin: str) -> str | None:
    """The preview's address (`api:job-preview`), dated so that each preview is a new URL."""
    try:
        path = job_route("job-preview", UUID(job_id))
    except NoReverseMatch:  # previews not served by this version
        return None
    return f"{origin}{path}?{urlencode({'at': at})}"


class JobEventStream(StreamingHttpResponse):
    """The view's answer: the opening of the stream (the retry hint, the job's state and its
    events after `Last-Event-ID`) and what the ASGI app needs to go on live from there.

    Served by the ASGI web process (`generation/streaming/app.py`), the stream goes on with each
    new event until the job's end. Served by a WSGI server (runserver, Django's test client)
    the answer is the opening alone: the client reconnects after `retry` with the id of the
    last event it got, which makes a stream of short polls that misses nothing.
    """

    def __init__(self, *, job: GenerationJob, events: list[StreamEvent], after: int, origin: str) -> None:
        opening = b"".join([retry_hint(), state_message(job), *(event.render(origin) for event in events)])
        super().__init__(iter([opening]), content_type="text/event-stream")
        # Nothing keeps a copy (the stream is private and live); nginx passes it on as it comes.
        self["Cache-Control"] = "no-cache, no-store, private"
        self["X-Accel-Buffering"] = "no"
        self.job_id = str(job.id)
        self.opening = opening
        self.origin = origin
        self.cursor = events[-1].id if events else after
        # Nothing more will come: the end is among the events sent now, or the job had ended when
        # it was read (before its events, so its end is among them or before Last-Event-ID).
        self.finished = job.is_finished or any(event.terminal for event in events)
