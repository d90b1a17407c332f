"""The team's jobs: the history list, one job's page and its progress panel."""

from __future__ import annotations

from dataclasses import replace
from uuid import UUID

from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, render
from django.views.decorators.http import condition, require_GET

from credits.models import LedgerEntry
from credits.services import job_credits_from_entries
from generation.models import GenerationJob
from generation.pages.context import page_team, page_user
from generation.pages.lineage import job_lineage
from generation.pages.outputs import OutputView, output_view, output_views
from generation.pages.studio import panel_etag, progress_context
from generation.selectors import (
    JobChain,
    job_chain_heads_for_team,
    job_chains_of,
    job_outputs_of,
    job_progress_job,
    job_queryset_for_team,
)
from generation.services.seen import jobs_mark_seen

PAGE_SIZE = 24


@login_required
@require_GET
def job_list(request: HttpRequest) -> HttpResponse:
    """The team's generations, newest first: a job and its retries are one row (the latest
    attempt's state and outputs) with its attempts in a history; the status filter is the latest
    attempt's. Pages count generations, not jobs."""
    status = request.GET.get("status", "")
    if status not in GenerationJob.Status.values:
        status = ""
    team = page_team(request)
    page = Paginator(job_chain_heads_for_team(team=team, status=status or None), PAGE_SIZE).get_page(
        request.GET.get("page")
    )
    chains = job_chains_of(team=team, heads=page.object_list)
    rows = _chain_rows(chains)
    return render(
        request,
        "jobs/list.html",
        {
            "page": page,
            "rows": rows,
            "status": status,
            "statuses": GenerationJob.Status.choices,
            # The list is drawn again whenever the live status changes while a row's job is active
            # (app.js, "live-changed"): its status, count and images follow without a reload.
            "follows_live": any(row["latest"].is_active for row in rows),
        },
    )


def _chain_rows(chains: list[JobChain]) -> list[dict]:
    """The chains as their rows draw them: the latest attempt's outputs with their looks (for the
    lightbox's remix and delete; one query for the page), and each attempt with the outputs it
    made itself (an output carried over from an earlier attempt is shown under that attempt)."""
    latest_outputs = [output for chain in chains for output in job_outputs_of(chain.latest)]
    views_by_job: dict[UUID, list[OutputView]] = {}
    for view in output_views(latest_outputs):
        views_by_job.setdefault(view.output.job_id, []).append(view)
    rows = []
    for chain in chains:
        title = chain.latest.prompt
        attempts = []
        for number, attempt in enumerate(chain.attempts, start=1):
            outputs = job_outputs_of(attempt)
            made = [output_view(output, title=title) for output in outputs if not output.carried_from_id]
            attempts.append({"job": attempt, "number": number, "made": made, "carried": len(outputs) - len(made)})
        latest_views = [replace(view, title=title) for view in views_by_job.get(chain.latest.id, [])]
        rows.append({"chain": chain, "latest": chain.latest, "outputs": latest_views, "attempts": attempts})
    return rows


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


def _polled_job(request: HttpRequest, job_id: UUID) -> GenerationJob | None:
    """The job as its panel shows it, read once per poll (one row, outputs included): the ETag
    and the panel are both drawn from it."""
    if not hasattr(request, "_atelier_polled_job"):
        request._atelier_polled_job = job_progress_job(job_id=job_id, user=page_user(request))  # type: ignore[attr-defined]
    return request._atelier_polled_job  # type: ignore[attr-defined]


def _job_progress_etag(request: HttpRequest, job_id: UUID) -> str | None:
    if not request.user.is_authenticated:
        return None
    job = _polled_job(request, job_id)
    return panel_etag(request, job) if job is not None else None


@login_required
@require_GET
@condition(etag_func=_job_progress_etag)
def job_progress(request: HttpRequest, job_id: UUID) -> HttpResponse:
    """A job's panel polled on its page (and beside a tab's newest job): a 304 while unchanged."""
    job = _polled_job(request, job_id)
    if job is None:
        raise Http404("No such job in this team.")
    jobs_mark_seen(jobs=[job], user=page_user(request))
    return render(request, "studio/partials/progress.html", progress_context(request, job))
