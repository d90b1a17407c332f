"""`GET /api/v1/jobs/{id}/events`: a job's changes as server-sent events.

The view opens the stream (the team's job or a 404, `Last-Event-ID`, the job's state and its
events since); the ASGI web process goes on live from there (generation/streaming/app.py).
"""

from __future__ import annotations

from uuid import UUID

from django.shortcuts import get_object_or_404
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.views import APIView

from accounts.permissions import request_team
from config.serializers import FROM_STRINGS, StrictSerializer
from generation.api.ranges import FileNegotiation
from generation.models import GenerationJob
from generation.streaming.messages import JobEventStream, job_events_after

EVENT_ID_MAX = 10**18 - 1  # 18 digits: within a bigint id, and a pattern can say it

LAST_EVENT_ID = OpenApiParameter(
    "Last-Event-ID",
    {"type": "string", "pattern": r"^[0-9]{0,18}$"},
    OpenApiParameter.HEADER,
    required=False,
    description="The id of the last event the client got (EventSource sends it when it reconnects): "
    "the stream sends the events after it. Wins over `last_event_id`; empty is as if not sent.",
)


# One event of the stream as a client parses it (the fields of the text/event-stream format; the
# OpenAPI 3.0/3.1 convention for `text/event-stream` is a schema per event, which schemathesis
# checks each parsed event against).
SERVER_SENT_EVENT = {
    "type": "object",
    "required": ["event", "data"],
    "properties": {
        "event": {
            "type": "string",
            "enum": ["state", "job.started", "job.output", "job.succeeded", "job.failed", "job.canceled", "preview"],
        },
        "data": {"type": "string", "description": "The event as JSON (see the description)"},
        "id": {
            "type": "string",
            "pattern": r"^[0-9]{0,18}$",
            "description": "The last outbox event's id (a client keeps it across events without one)",
        },
        "retry": {"type": "integer", "description": "Milliseconds before a client reconnects"},
    },
}


class EventsQuerySerializer(StrictSerializer):
    last_event_id = serializers.IntegerField(
        required=False,
        min_value=0,
        max_value=EVENT_ID_MAX,
        help_text="As the `Last-Event-ID` header, for clients that cannot set headers",
    )


class JobEventsView(APIView):
    # The stream is text/event-stream whatever the Accept header asks (EventSource asks for
    # exactly that; DRF knows only JSON and would answer 406); errors are JSON.
    content_negotiation_class = FileNegotiation

    @extend_schema(
        parameters=[EventsQuerySerializer, LAST_EVENT_ID],
        responses={
            (200, "text/event-stream"): OpenApiResponse(
                SERVER_SENT_EVENT,
                description="Server-sent events. First `event: state` (no id): the job's `status` and "
                "`progress` now. Then each change with its id: `job.started`, `job.output` (with `output`, "
                "as in the job's `outputs`), and the end, `job.succeeded`, `job.failed` or `job.canceled`, "
                "after which the stream closes. `data` is JSON: `type`, `job_id`, `status`, "
                "`progress {completed, total}`, `error`, `created_at`. `event: preview` (no id): a partial "
                "image of the output in progress, `index` and `url`. A comment line (`: keep-alive`) every "
                "15 s of silence. The stream also closes after 30 minutes: reconnect with `Last-Event-ID` "
                "(EventSource does so by itself; close it after the end). A finished job's stream sends "
                "what is left and closes.",
            ),
        },
        summary="The job's changes as server-sent events, resumable with Last-Event-ID",
    )
    def get(self, request: Request, job_id: UUID) -> JobEventStream:
        query = EventsQuerySerializer(data=request.query_params.dict(), context={FROM_STRINGS: True})
        query.is_valid(raise_exception=True)
        header = _last_event_id(request)
        after = header if header is not None else query.validated_data.get("last_event_id", 0)
        # The job first, its events after: a finished job's end is then among them or before `after`.
        job = get_object_or_404(
            GenerationJob.objects.filter(team=request_team(request)).only(
                "id", "status", "completed_outputs", "total_outputs", "error_code", "error_message"
            ),
            id=job_id,
        )
        origin = request.build_absolute_uri("/")[:-1]
        return JobEventStream(job=job, events=job_events_after(job.id, after), after=after, origin=origin)


def _last_event_id(request: Request) -> int | None:
    value = request.headers.get("Last-Event-ID", "").strip()
    if not value:
        return None
    if not value.isascii() or not value.isdigit() or len(value) > 18:
        raise serializers.ValidationError({"Last-Event-ID": ["Must be the id of an event: a whole number."]})
    return int(value)
