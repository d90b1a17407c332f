"""Jobs history, one job's page, and the collection (looks): gallery, full size, delete, remix."""

from __future__ import annotations

from uuid import UUID

from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.db import connection
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_GET, require_POST

from generation.models import GenerationJob
from generation.pages.context import page_team, page_user
from generation.pages.studio import progress_context
from generation.selectors import job_list_for_team, job_queryset_for_team, look_list_for_team
from generation.services.studio import job_mark_seen, tab_remix

PAGE_SIZE = 24


@require_GET
def home(request: HttpRequest) -> HttpResponse:
    return redirect("studio" if request.user.is_authenticated else "login")


@login_required
@require_GET
def job_list(request: HttpRequest) -> HttpResponse:
    status = request.GET.get("status", "")
    if status not in GenerationJob.Status.values:
        status = ""
    jobs = job_list_for_team(team=page_team(request), status=status or None).select_related("created_by")
    page = Paginator(jobs, PAGE_SIZE).get_page(request.GET.get("page"))
    return render(request, "jobs/list.html", {"page": page, "status": status, "statuses": GenerationJob.Status.choices})


@login_required
@require_GET
def job_page(request: HttpRequest, job_id: UUID) -> HttpResponse:
    job = get_object_or_404(job_queryset_for_team(page_team(request)), id=job_id)
    return render(request, "jobs/detail.html", progress_context(request, job))


@login_required
@require_GET
def job_progress(request: HttpRequest, job_id: UUID) -> HttpResponse:
    job = get_object_or_404(GenerationJob, id=job_id, team=page_team(request))
    job_mark_seen(job=job, user=page_user(request))
    return render(request, "studio/partials/progress.html", progress_context(request, job))


@login_required
@require_GET
def collection(request: HttpRequest) -> HttpResponse:
    page = Paginator(look_list_for_team(team=page_team(request)), PAGE_SIZE).get_page(request.GET.get("page"))
    return render(request, "collection/list.html", {"page": page})


@login_required
@require_GET
def look_page(request: HttpRequest, look_id: UUID) -> HttpResponse:
    look = get_object_or_404(look_list_for_team(team=page_team(request)), id=look_id)
    return render(request, "collection/detail.html", {"look": look})


@login_required
@require_POST
def look_delete(request: HttpRequest, look_id: UUID) -> HttpResponse:
    get_object_or_404(look_list_for_team(team=page_team(request)), id=look_id).delete()
    return redirect("collection")


@login_required
@require_POST
def look_remix(request: HttpRequest, look_id: UUID) -> HttpResponse:
    look = get_object_or_404(look_list_for_team(team=page_team(request)), id=look_id)
    tab = tab_remix(look=look, user=page_user(request), team=page_team(request))
    return redirect("studio-tab", tab_id=tab.id)


def healthz(request: HttpRequest) -> JsonResponse:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
    return JsonResponse({"ok": True})
