"""Jobs history, one job's page, and the collection (looks): gallery, full size, delete, remix."""

from __future__ import annotations

from uuid import UUID

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.db import connection
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_GET, require_POST

from accounts.quotas import Quota, QuotaExceeded
from config.throttles import RateScope
from credits.models import LedgerEntry
from credits.services import job_credits_from_entries
from generation.models import GenerationJob
from generation.pages.context import page_team, page_user
from generation.pages.limits import rate_limited
from generation.pages.studio import output_view, progress_context
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
    context = progress_context(request, job)
    captured = dict(
        LedgerEntry.objects.filter(job_id=job.id, kind=LedgerEntry.Kind.CAPTURE).values_list(
            "output_index", "held_delta"
        )
    )
    context["reports"] = [
        {
            "view": view,
            "captured": -captured.get(view.output.index, 0),
            "rows": report_rows(view.output.provider_report),
        }
        for view in context["outputs"]
    ]
    context["credits"] = job_credits_from_entries(list(job.ledger_entries.all()))
    return render(request, "jobs/detail.html", context)


# How the job page names what a provider reported (see ProviderOutput.report); other keys as they come.
REPORT_LABELS = {
    "model_version": "Model version",
    "revised_prompt": "Revised prompt",
    "usage": "Usage",
    "cost": "Cost",
    "operation": "Operation",
}


def report_rows(report: dict, prefix: str = "") -> list[tuple[str, str]]:
    """A provider's report as (label, value) rows, nested parts flattened: usage's token counts
    become "Usage · input_tokens", so an operator can set them beside the provider's bill."""
    rows: list[tuple[str, str]] = []
    keys = [key for key in REPORT_LABELS if key in report] + sorted(key for key in report if key not in REPORT_LABELS)
    for key in keys:
        value = report[key]
        label = f"{prefix} · {key}" if prefix else REPORT_LABELS.get(key, key.replace("_", " ").capitalize())
        if isinstance(value, dict):
            rows.extend(report_rows(value, label))
        elif value is not None and value != "":
            rows.append((label, ", ".join(map(str, value)) if isinstance(value, list) else str(value)))
    return rows


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
    looks = [(look, output_view(look.output)) for look in page]
    return render(request, "collection/list.html", {"page": page, "looks": looks})


@login_required
@require_GET
def look_page(request: HttpRequest, look_id: UUID) -> HttpResponse:
    return _look_page(request, look_id)


def _look_page(request: HttpRequest, look_id: UUID) -> HttpResponse:
    look = get_object_or_404(look_list_for_team(team=page_team(request)), id=look_id)
    return render(request, "collection/detail.html", {"look": look, "item": output_view(look.output)})


@login_required
@require_POST
def look_delete(request: HttpRequest, look_id: UUID) -> HttpResponse:
    get_object_or_404(look_list_for_team(team=page_team(request)), id=look_id).delete()
    return redirect("collection")


@login_required
@require_POST
@rate_limited(RateScope.API, page=_look_page)
def look_remix(request: HttpRequest, look_id: UUID) -> HttpResponse:
    look = get_object_or_404(look_list_for_team(team=page_team(request)), id=look_id)
    try:
        tab = tab_remix(look=look, user=page_user(request), team=page_team(request))
    except QuotaExceeded as error:
        # Only the tabs quota is helped by closing a tab; a draft too large for the team's
        # quota (a long prompt) is not.
        advice = " Close a studio tab to remix this look." if error.quota is Quota.STUDIO_TABS else ""
        messages.error(request, f"{error.message}{advice}")
        return redirect("look-page", look_id=look.id)
    return redirect("studio-tab", tab_id=tab.id)


def healthz(request: HttpRequest) -> JsonResponse:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
    return JsonResponse({"ok": True})
