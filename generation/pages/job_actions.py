"""What a person does to a job from any page: cancel it, retry it."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect
from django.urls import reverse
from django.views.decorators.http import require_POST

from config.errors import ServiceError
from config.throttles import RateScope, rate_limit_wait
from credits.services import InsufficientCredits
from generation.models import GenerationJob, StudioTab
from generation.pages.context import page_team, page_user
from generation.pages.limits import too_many_message
from generation.services.lifecycle import job_cancel
from generation.services.retry import job_retry


@login_required
@require_POST
def job_cancel_view(request: HttpRequest, job_id: str) -> HttpResponse:
    job = get_object_or_404(GenerationJob, id=job_id, team=page_team(request))
    try:
        job_cancel(job=job)
    except ServiceError as error:
        messages.warning(request, error.message)
    return _back(request, job)


@login_required
@require_POST
def job_retry_view(request: HttpRequest, job_id: str) -> HttpResponse:
    job = get_object_or_404(GenerationJob, id=job_id, team=page_team(request))
    wait = rate_limit_wait(request, RateScope.SUBMIT)  # a retry holds credits, like Generate
    if wait is not None:
        messages.error(request, too_many_message(wait, "generations"))
        return _back(request, job)
    try:
        retry, _ = job_retry(job=job, user=page_user(request))
    except InsufficientCredits as error:
        messages.error(
            request,
            f"Retrying needs {error.details['required']} credits; the team has {error.details['available']}.",
        )
        return _back(request, job)
    except ServiceError as error:
        messages.warning(request, error.message)
        return _back(request, job)
    return _back(request, retry)


def _back(request: HttpRequest, job: GenerationJob) -> HttpResponse:
    """To the job's tab when it has one of this person's, else to the job's page."""
    if job.tab_id and StudioTab.objects.filter(id=job.tab_id, user=page_user(request)).exists():
        return redirect("studio-tab", tab_id=job.tab_id)
    return redirect(reverse("job-page", kwargs={"job_id": job.id}))
