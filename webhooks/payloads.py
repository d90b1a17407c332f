"""What a webhook says: a job event in the Standard Webhooks shape, the job in the API's words.

    {"type": "job.output", "timestamp": "<when the event happened>",
     "data": {<the job, as GET /api/v1/jobs/{id} answers it>, "output": {<the announced image>}}}

`data` is the job as the API represents it when the delivery is sent (the same serializer, links
made absolute with PUBLIC_BASE_URL since there is no request): a late or repeated delivery
carries the job's state of that moment, while `type` and `timestamp` say what happened and when.
A `job.output` event adds `data.output`, the image it announces (index counted from 1, its URL),
whatever else has arrived since. Every delivery of one event (retries, "send again", every
endpoint) has one `webhook-id`, `evt_<event id>`, so a receiver can drop repeats.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from rest_framework.fields import DateTimeField
from rest_framework.renderers import JSONRenderer

from generation.api.serializers import JobSerializer, OutputSerializer
from generation.models import JobEvent
from generation.selectors import job_outputs_of, job_queryset_for_team


class _PublicOrigin:
    """Stands in for the request the API's serializers take the origin of their links from: a
    delivery has none, so its links start at PUBLIC_BASE_URL."""

    def build_absolute_uri(self, location: str = "/") -> str:
        return settings.PUBLIC_BASE_URL + location


def webhook_id(event: JobEvent) -> str:
    return f"evt_{event.id}"


def event_payload(event: JobEvent) -> dict[str, Any] | None:
    """The payload of `event` (None when its job is gone), read in one query for the job."""
    job = job_queryset_for_team(event.team).filter(id=event.job_id).first()
    if job is None:
        return None
    context = {"request": _PublicOrigin()}
    data = dict(JobSerializer(job, context=context).data)
    if event.type == JobEvent.Type.OUTPUT:
        output = next((output for output in job_outputs_of(job) if output.index == event.output_index), None)
        data["output"] = OutputSerializer(output, context=context).data if output is not None else None
    return {"type": event.type, "timestamp": DateTimeField().to_representation(event.created_at), "data": data}


def payload_body(payload: dict[str, Any]) -> bytes:
    """The bytes that are signed and sent: JSON as the API renders it."""
    return JSONRenderer().render(payload)
