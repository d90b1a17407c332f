"""The studio: tabs, the generation form, the live progress panel. Plain HTML forms that htmx
enhances (the estimate refreshes as you type, the progress panel polls while a job runs)."""

from __future__ import annotations

import hashlib

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.template.loader import render_to_string
from django.utils import timezone
from django.views.decorators.http import condition, require_GET, require_POST

from accounts.quotas import QuotaExceeded
from config.errors import ServerBusy, ServiceError
from config.throttles import RateScope, rate_limit_wait
from credits.services import InsufficientCredits
from generation.errors import IdempotencyConflict
from generation.models import ACTIVE_STATUSES, GenerationJob, StudioTab
from generation.pages.context import page_queue_places, page_team, page_user
from generation.pages.form_shape import form_shape, labelled_errors
from generation.pages.limits import rate_limited, too_many_message
from generation.pages.outputs import output_views
from generation.pages.studio_form import draft_from_post, draft_spec, form_errors, form_values, uploads_sent
from generation.pages.submit_token import idempotency_key_of, new_submit_token
from generation.routes import job_preview_path
from generation.selectors import QueuePlace, job_outputs_of, tab_progress_job
from generation.services.previews import ShownPreview, job_preview
from generation.services.seen import jobs_mark_seen
from generation.services.studio import tab_close, tab_create, tab_current_job, tab_rename, tab_save_draft
from generation.services.submit import Estimate, job_estimate, job_submit
from generation.uploads import oversized_uploads

POLL_SECONDS = 1


def _tab(request: HttpRequest, tab_id: int) -> StudioTab:
    # Another person's (or another team's) tab is "not found".
    return get_object_or_404(StudioTab, id=tab_id, user=page_user(request), team=page_team(request))


def _tabs(request: HttpRequest) -> list[StudioTab]:
    """The person's tabs in their order (the live status marks the busy ones: generation/pages/activity.py)."""
    return list(StudioTab.objects.filter(user=page_user(request), team=page_team(request)).order_by("position", "id"))


def elapsed_text(seconds: float) -> str:
    """0:07, 12:34, 1:02:03 (app.js formats the ticking copy alike)."""
    minutes, secs = divmod(max(int(seconds), 0), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def _queue_place(request: HttpRequest, job: GenerationJob) -> QueuePlace | None:
    """A queued job's place in the fair order (the one selector, `QueuePlaces`), from one snapshot
    of the queue per request: the poll's ETag and its panel share it."""
    return page_queue_places(request).of(job)


def progress_context(request: HttpRequest, job: GenerationJob | None, tab: StudioTab | None = None) -> dict:
    """The progress panel: the outputs so far, the places of those to come, and honest progress:
    the queue position while queued; while running, for how long (since the job started), the
    provider's own percentage of the output it is making when it reports one (Veo does), and the
    live preview of that output when its provider shows one, in the place it will take."""
    if job is None:
        return {"job": None, "tab": tab, "outputs": [], "pending": range(0), "poll_seconds": POLL_SECONDS}
    # With their looks, so the panel's lightbox offers Remix and Delete (one query).
    outputs = output_views(job_outputs_of(job), title=job.prompt, job=job)
    running = job.status == GenerationJob.Status.RUNNING
    operation = job.provider_operation if running else {}
    provider_percent = operation.get("progress")
    done = job.completed_outputs + (provider_percent or 0) / 100
    preview = job_preview(job)
    return {
        "job": job,
        "tab": tab,
        "outputs": outputs,
        # Placeholders for the outputs still to come, while the job can still make them.
        "pending": range(job.total_outputs - len(outputs)) if job.is_active else range(0),
        "is_video": job.kind == GenerationJob.Kind.VIDEO,
        "frame_ratio": str(job.params.get("aspect_ratio") or "1:1"),  # app.css shapes a placeholder by it
        "percent": round(100 * done / job.total_outputs),
        "progress_value": f"{done:.2f}",
        "running_for": elapsed_text((timezone.now() - job.started_at).total_seconds())
        if running and job.started_at
        else "",
        "provider_percent": provider_percent,
        "operation_number": operation.get("index", job.completed_outputs) + 1,
        # Shown in the first place still to come: the images are made in order.
        "preview": _preview_view(job, preview) if preview else None,
        "poll_seconds": POLL_SECONDS,
        "queue_place": _queue_place(request, job),
    }


def _preview_view(job: GenerationJob, preview: ShownPreview) -> dict:
    """The live preview as its slot shows it; `element_id` names this very preview, so a redrawn
    panel keeps the image already loaded (hx-preserve) and only a newer preview loads afresh."""
    return {
        "number": preview.number,
        "url": job_preview_path(job.id, preview.stamp),
        "element_id": f"preview-{job.id}-{preview.at:%Y%m%d%H%M%S%f}",
    }


def _shown_key(tab: StudioTab) -> str:
    return f"atelier:studio:{tab.id}:shown"


def _show_once(
    request: HttpRequest, tab: StudioTab, *, errors: dict | None = None, shortfall: dict | None = None
) -> None:
    """Keep what a refused post has to show (its field errors, the credits it lacked) for the next
    drawing of the tab only: every studio post ends in a redirect (a reload then sends nothing
    again), and the draft it refers to is already saved in the tab."""
    request.session[_shown_key(tab)] = {"errors": errors or {}, "shortfall": shortfall}


def _draft_estimate(draft: dict) -> Estimate | None:
    """The cost and the prompt to be sent of a stored draft, when it is a job (reads only)."""
    spec = draft_spec(draft)
    if spec is None:
        return None
    try:
        return job_estimate(spec=spec)
    except ServiceError:
        return None


def _earlier_active_panels(request: HttpRequest, tab: StudioTab, current: GenerationJob | None) -> list[str]:
    """The progress panels of the tab's other queued and running jobs, newest first: pressing
    Generate again starts a job beside the running one, never hiding it. Each polls its own job."""
    if current is None:
        return []
    jobs = GenerationJob.objects.filter(tab=tab, status__in=ACTIVE_STATUSES).exclude(id=current.id)
    return [
        render_to_string("studio/partials/progress.html", progress_context(request, job), request=request)
        for job in jobs.order_by("-created_at")
    ]


def _render_tab(request: HttpRequest, tab: StudioTab, status: int = 200) -> HttpResponse:
    """The tab as stored: its draft in the form, the errors and shortfall of the post that
    redirected here (once), the estimate of the draft, and the progress of its jobs."""
    shown = request.session.pop(_shown_key(tab), None) or {}
    errors = shown.get("errors") or {}
    values = form_values(tab.draft)
    job = tab_current_job(tab)
    context = {
        "tabs": _tabs(request),
        "tab": tab,
        # One token per rendered form: submitting it twice (a double click) starts one job.
        "submit_token": new_submit_token(),
        "values": values,
        "errors": errors,
        "shape": form_shape(values, errors),
        "shortfall": shown.get("shortfall"),
        "estimate": _draft_estimate(tab.draft),
        **progress_context(request, job, tab),
        "earlier_active": _earlier_active_panels(request, tab, job),
    }
    return render(request, "studio/studio.html", context, status=status)


def _back_to_tab(tab: StudioTab) -> HttpResponse:
    return redirect("studio-tab", tab_id=tab.id)


@login_required
@require_GET
def studio(request: HttpRequest) -> HttpResponse:
    tabs = _tabs(request)
    if tabs:
        return redirect("studio-tab", tab_id=tabs[0].id)
    try:
        tab = tab_create(user=page_user(request), team=page_team(request))
    except QuotaExceeded as error:  # a team whose quota allows no tabs at all
        messages.error(request, error.message)
        return redirect("job-list")
    return redirect("studio-tab", tab_id=tab.id)


@login_required
@require_GET
def tab_page(request: HttpRequest, tab_id: int) -> HttpResponse:
    return _render_tab(request, _tab(request, tab_id))


def _tab_refused(request: HttpRequest, tab_id: int) -> HttpResponse:
    """A refused post to a tab: the tab as stored (the messages say why)."""
    return _render_tab(request, _tab(request, tab_id))


@login_required
@require_POST
@rate_limited(RateScope.API)
def tab_new(request: HttpRequest) -> HttpResponse:
    try:
        tab = tab_create(user=page_user(request), team=page_team(request), title=request.POST.get("title", ""))
    except QuotaExceeded as error:
        messages.error(request, f"{error.message} Close a tab to open another.")
        return redirect("studio")
    return redirect("studio-tab", tab_id=tab.id)


@login_required
@require_POST
@rate_limited(RateScope.API, page=_tab_refused)
def tab_rename_view(request: HttpRequest, tab_id: int) -> HttpResponse:
    tab = tab_rename(tab=_tab(request, tab_id), title=request.POST.get("title", ""))
    return redirect("studio-tab", tab_id=tab.id)


@login_required
@require_POST
@rate_limited(RateScope.API, page=_tab_refused)
def tab_close_view(request: HttpRequest, tab_id: int) -> HttpResponse:
    tab_close(tab=_tab(request, tab_id))
    return redirect("studio")


@login_required
@require_POST
@rate_limited(RateScope.ESTIMATE, page=_tab_refused)  # each one also saves the draft
def tab_estimate(request: HttpRequest, tab_id: int) -> HttpResponse:
    """The cost and optimized prompt of the form as it stands (htmx: the estimate panel); also
    saves the draft (files aside). Without htmx: the draft is saved and the tab drawn again."""
    tab = _tab(request, tab_id)
    try:
        form = draft_from_post(post=request.POST, files={}, team=page_team(request), user=page_user(request))  # type: ignore[arg-type]
        tab_save_draft(tab=tab, draft=form.draft)
    except QuotaExceeded as error:
        return _draft_refused(request, tab, error)
    estimate = None
    if form.spec is not None:
        try:
            estimate = job_estimate(spec=form.spec)
        except ServiceError as error:
            form.errors = form_errors(error.details)
    if request.htmx:  # type: ignore[attr-defined]
        context = {"estimate": estimate, "estimate_errors": labelled_errors(form.errors)}
        return render(request, "studio/partials/estimate.html", context)
    _show_once(request, tab, errors=form.errors)
    return _back_to_tab(tab)


@login_required
@require_POST
@rate_limited(RateScope.ESTIMATE, page=_tab_refused)
def tab_form_settings(request: HttpRequest, tab_id: int) -> HttpResponse:
    """The form's settings drawn again for the provider, kind and model just chosen (htmx swaps
    them in, then asks for the estimate, which saves the draft). Without htmx: the draft is saved
    and the tab drawn again."""
    tab = _tab(request, tab_id)
    try:
        form = draft_from_post(post=request.POST, files={}, team=page_team(request), user=page_user(request))  # type: ignore[arg-type]
    except QuotaExceeded as error:
        return _draft_refused(request, tab, error)
    if not request.htmx:  # type: ignore[attr-defined]
        tab_save_draft(tab=tab, draft=form.draft)
        return _back_to_tab(tab)
    values = form_values(form.draft)
    context = {"tab": tab, "values": values, "shape": form_shape(values, {}), "reshaped": True}
    return render(request, "studio/partials/form_settings.html", context)


@login_required
@require_POST
def tab_generate(request: HttpRequest, tab_id: int) -> HttpResponse:
    """Start a job from the form. Whatever happens, the answer is a redirect to the tab (a reload
    sends nothing again): the draft is saved in the tab first, and what the person must see (field
    errors, the credits lacking, a quota or limit) is kept for the next drawing of the tab."""
    tab = _tab(request, tab_id)
    team, user = page_team(request), page_user(request)
    # The API's submit limit: the button spends credits as a POST /api/v1/jobs does. Checked
    # before the form is read, so a refused press stores nothing, not even its uploads.
    wait = rate_limit_wait(request, RateScope.SUBMIT)
    if wait is not None:
        messages.error(request, too_many_message(wait, "generations"))
        return _back_to_tab(tab)
    oversized = oversized_uploads(request)
    # Each file is an upload, counted as a POST /api/v1/assets is; all of them before any is
    # stored, so a press over the upload limit stores nothing, draft included.
    for _ in uploads_sent(request.FILES, oversized=oversized):
        wait = rate_limit_wait(request, RateScope.UPLOAD)
        if wait is not None:
            messages.error(request, too_many_message(wait, "uploads"))
            return _back_to_tab(tab)
    post = request.POST.copy()
    post["tab"] = str(tab.id)
    try:
        form = draft_from_post(post=post, files=request.FILES, team=team, user=user, oversized=oversized)
        form.draft.pop("tab", None)
        tab_save_draft(tab=tab, draft=form.draft)
    except QuotaExceeded as error:
        return _draft_refused(request, tab, error)
    except ServerBusy as error:  # no memory free to check an image now: the page says to send it again
        messages.error(request, f"{error.message} Press Generate again in {error.retry_after} seconds.")
        return _back_to_tab(tab)
    if form.spec is None:
        _show_once(request, tab, errors=form.errors)
        return _back_to_tab(tab)
    idempotency_key = idempotency_key_of(request, scope="studio")
    already_running = GenerationJob.objects.filter(tab=tab, status__in=ACTIVE_STATUSES).exists()
    try:
        result = job_submit(team=team, user=user, spec=form.spec, idempotency_key=idempotency_key)
    except IdempotencyConflict:
        messages.warning(request, "This form was already sent and its job started; change it and press Generate again.")
        return _back_to_tab(tab)
    except InsufficientCredits as error:
        shortfall = {**error.details, "short": error.details["required"] - error.details["available"]}
        _show_once(request, tab, shortfall=shortfall)
        return _back_to_tab(tab)
    except QuotaExceeded as error:  # the team's active jobs fill its quota
        messages.error(request, f"{error.message} Wait for one to finish, or cancel one, and press Generate again.")
        return _back_to_tab(tab)
    except ServiceError as error:
        _show_once(request, tab, errors=form_errors(error.details) or {"prompt": [error.message]})
        return _back_to_tab(tab)
    if result.created and already_running:
        messages.info(request, "Started beside the generation already running in this tab; both are shown.")
    return _back_to_tab(tab)


def _draft_refused(request: HttpRequest, tab: StudioTab, error: QuotaExceeded) -> HttpResponse:
    """A draft over its size quota: nothing was saved. The tab is drawn from its stored draft,
    so the page does not carry the refused text back."""
    if request.htmx:  # type: ignore[attr-defined]
        context = {"estimate": None, "estimate_errors": [("Draft", [error.message])]}
        return render(request, "studio/partials/estimate.html", context, status=error.status_code)
    messages.error(request, error.message)
    return _back_to_tab(tab)


def _polled_job(request: HttpRequest, tab_id: int) -> GenerationJob | None:
    """The tab's current job as its panel shows it, read once per poll (one query): the ETag and
    the panel are both drawn from it."""
    if not hasattr(request, "_atelier_polled_job"):
        request._atelier_polled_job = tab_progress_job(tab_id=tab_id, user=page_user(request))  # type: ignore[attr-defined]
    return request._atelier_polled_job  # type: ignore[attr-defined]


def _progress_etag(request: HttpRequest, tab_id: int) -> str | None:
    """What the panel shows, from the job's row: a poll that finds nothing new gets a 304."""
    if not request.user.is_authenticated:
        return None
    job = _polled_job(request, tab_id)
    if job is None:
        return None  # no job (nothing polls then), or not the person's tab: the view answers
    return panel_etag(request, job)


def panel_etag(request: HttpRequest, job: GenerationJob) -> str:
    """The ETag of a job's progress panel, from the job's row (`job_queryset_for_team` or
    `tab_progress_job`): a poll that finds nothing new gets a 304."""
    shown = (
        job.team_id, job.id, job.status, job.completed_outputs, job.cancel_requested, job.created_at,
        job.outage_since,
        # The running time ticks in the page (app.js), not here: a poll stays a 304 until
        # something else changes, such as the provider's own progress or a new preview.
        job.started_at, job.provider_operation, job.preview_at,
    )  # fmt: skip
    return hashlib.sha256(f"{shown}|{_queue_place(request, job)}".encode()).hexdigest()[:32]


@login_required
@require_GET
@condition(etag_func=_progress_etag)
def tab_progress(request: HttpRequest, tab_id: int) -> HttpResponse:
    job = _polled_job(request, tab_id)
    tab: StudioTab | None
    if job is None:
        # The person's own tab in a team of theirs, with no job yet; anyone else's is "not found".
        tab = get_object_or_404(
            StudioTab, id=tab_id, user=page_user(request), team__memberships__user=page_user(request)
        )
    else:
        tab = job.tab
        # The poll showed the job finishing in front of the person: no "while you were away" for it.
        jobs_mark_seen(jobs=[job], user=page_user(request))
    # Like every signed-in page it is sent no-store (config/cache_control.py): the browser keeps
    # no copy, so app.js asks with the ETag of the last panel, and a poll that finds nothing new
    # is a 304.
    return render(request, "studio/partials/progress.html", progress_context(request, job, tab))
