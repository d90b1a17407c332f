"""Pages. The studio arrives with its own issue; these show the team's jobs and one job."""

from __future__ import annotations

from uuid import UUID

from django.contrib.auth.decorators import login_required
from django.db import connection
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import get_object_or_404, render

from accounts.teams import current_team
from generation.selectors import job_list_for_team, job_queryset_for_team


@login_required
def home(request: HttpRequest) -> HttpResponse:
    team = current_team(request)
    if team is None:
        raise Http404("You are not a member of any team.")
    return render(request, "generation/home.html", {"team": team, "jobs": job_list_for_team(team=team)[:50]})


@login_required
def job_page(request: HttpRequest, job_id: UUID) -> HttpResponse:
    team = current_team(request)
    if team is None:
        raise Http404("You are not a member of any team.")
    job = get_object_or_404(job_queryset_for_team(team), id=job_id)
    return render(request, "generation/job.html", {"team": team, "job": job})


def healthz(request: HttpRequest) -> JsonResponse:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
    return JsonResponse({"ok": True})
