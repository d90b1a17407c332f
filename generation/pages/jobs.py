"""The team's jobs: the history list, one job's page and its progress panel."""

from __future__ import annotations

from uuid import UUID

from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, render
from django.views.decorators.http import require_GET

from credits.models import LedgerEntry
from credits.services import job_credits_from_entries
from generation.models import GenerationJob
from generation.pages.context import page_team, page_user
from generation.pages.lineage import job_lineage
from generation.pages.studio import progress_context
from generation.selectors import job_list_for_team, job_queryset_for_team
from generation.services.seen import jobs_mark_seen

PAGE_SIZE = 24


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
    context["lineage"] = job_lineage(job)
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
    jobs_mark_seen(jobs=[job], user=page_user(request))
    return render(request, "studio/partials/progress.html", progress_context(request, job))
