"""What a person does to a job from any page: cancel it, retry it (a failed job, or a canceled
one's missing images), edit the prompt of one the provider refused."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect
from django.urls import reverse
from django.views.decorators.http import require_POST

from accounts.quotas import Quota, QuotaExceeded
from config.errors import ServiceError
from config.throttles import RateScope, rate_limit_wait
from credits.services import InsufficientCredits
from generation.models import GenerationJob, StudioTab
from generation.pages.context import page_team, page_user
from generation.pages.limits import too_many_message
from generation.services.lifecycle import job_cancel
from generation.services.retry import job_retry
from generation.services.studio import tab_for_prompt_edit

# The studio's prompt field: the tab opens scrolled to it, marked (history.css, :target).
PROMPT_ANCHOR = "#id_prompt"


@login_required
@require_POST
def job_cancel_view(request: HttpRequest, job_id: str) -> HttpResponse:
    job = get_object_or_404(GenerationJob, id=job_id, team=page_team(request))
    try:
        job_cancel(job=job)
    except ServiceError as error:
        messages.warning(request, error.message)
    if request.htmx:  # type: ignore[attr-defined]
        # Sent in the background (the queue panel): nothing to draw, the live poll shows the
        # job stopping; a refusal's message waits for the next page instead of a discarded one.
        return HttpResponse(status=204)
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


@login_required
@require_POST
def job_edit_prompt_view(request: HttpRequest, job_id: str) -> HttpResponse:
    """The studio, at the prompt that made `job`: its own tab when the job is still that tab's
    current job (the tab's form holds its settings), else a new tab with the job's settings."""
    job = get_object_or_404(GenerationJob, id=job_id, team=page_team(request))
    try:
        tab = tab_for_prompt_edit(job=job, user=page_user(request), team=page_team(request))
    except QuotaExceeded as error:
        advice = " Close a studio tab to edit this prompt." if error.quota is Quota.STUDIO_TABS else ""
        messages.error(request, f"{error.message}{advice}")
        return redirect(reverse("job-page", kwargs={"job_id": job.id}))
    return redirect(reverse("studio-tab", kwargs={"tab_id": tab.id}) + PROMPT_ANCHOR)


def _back(request: HttpRequest, job: GenerationJob) -> HttpResponse:
    """To the job's tab when it has one of this person's, else to the job's page."""
    if job.tab_id and StudioTab.objects.filter(id=job.tab_id, user=page_user(request)).exists():
        return redirect("studio-tab", tab_id=job.tab_id)
    return redirect(reverse("job-page", kwargs={"job_id": job.id}))
