"""Paths of a job's API routes, for the answers and pages that link to every output of a job.

reverse() walks the URLconf on each call; a job of ten images links its outputs ten times per
answer and the status poll asks every second, so each route's path is worked out once (with
slots for the job id and the number) and then filled in.
"""

from __future__ import annotations

from functools import cache
from urllib.parse import urlencode
from uuid import UUID

from django.urls import get_script_prefix, reverse

_JOB_ID_SLOT = UUID(int=0)
_NUMBER_SLOT = 987_654_321
_NUMBERED = ("job-output", "job-output-poster")


@cache
def _route_template(route: str, script_prefix: str) -> str:
    kwargs: dict[str, object] = {"job_id": _JOB_ID_SLOT}
    if route in _NUMBERED:
        kwargs["number"] = _NUMBER_SLOT
    path = reverse(f"api:{route}", kwargs=kwargs)
    return path.replace(str(_JOB_ID_SLOT), "{job_id}").replace(str(_NUMBER_SLOT), "{number}")


def job_route(route: str, job_id: UUID, number: int | None = None) -> str:
    """reverse(f"api:{route}", kwargs={"job_id": job_id, "number": number}) for the job routes
    (job-detail, job-cancel, job-retry, job-download, job-output, job-output-poster, job-preview)."""
    return _route_template(route, get_script_prefix()).format(job_id=job_id, number=number)


def job_preview_path(job_id: UUID, stamp: str) -> str:
    """The path of a job's live preview, dated by when the preview was made (`?at=`), so that
    each preview is a new URL and no browser shows an older one from its memory."""
    return f"{job_route('job-preview', job_id)}?{urlencode({'at': stamp})}"
