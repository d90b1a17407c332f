"""The operators' monitor: jobs by state, their images and zip, and cancel/retry actions.

An operator is staff, not a member of the job's team, so the team's own file routes (the pages'
and the API's) answer them "not found". The admin serves a job's files itself, under the job's
admin URL, to active staff who may view jobs (`generation.view_generationjob`), never to others.
"""

from __future__ import annotations

from typing import Any, ClassVar

from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.core.files.storage import default_storage
from django.db.models import Q, QuerySet
from django.http import FileResponse, Http404, HttpRequest, HttpResponse, HttpResponseBase, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.template.defaultfilters import filesizeformat, truncatechars
from django.urls import URLPattern, path, reverse
from django.utils import timezone
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString
from storages.backends.s3 import S3Storage

from config.cache_control import never_store
from generation.errors import NothingToDownload, ServiceError
from generation.models import (
    ACTIVE_STATUSES,
    FINISHED_STATUSES,
    GeneratedOutput,
    GenerationJob,
    InputAsset,
    Look,
    RetentionSweep,
    StudioTab,
    WorkerHeartbeat,
)
from generation.services.archives import job_archive_open
from generation.services.files import (
    output_download_name,
    output_label,
    poster_download_name,
    signed_file_headers,
    stored_name,
)
from generation.services.lifecycle import job_cancel
from generation.services.retention import KIND_WORDS, KINDS, retention_summary
from generation.services.retry import job_retry

PROMPT_SHOWN = 60  # characters of a prompt in the job list and the job page's title
THUMBNAIL_PX = 96


def _output_url(output: GeneratedOutput, *, poster: bool = False) -> str:
    route = "admin:generation_generationjob_output_poster" if poster else "admin:generation_generationjob_output"
    return reverse(route, kwargs={"object_id": output.job_id, "number": output.index + 1})


def _thumbnail(output: GeneratedOutput) -> SafeString:
    """The output's thumbnail (a clip shows its poster frame), linking to the file itself."""
    return format_html(
        '<a href="{}" target="_blank" rel="noopener" data-testid="admin-output">'
        '<img src="{}" alt="{}" height="{}"></a>',
        _output_url(output),
        _output_url(output, poster=bool(output.poster)),
        output_label(output.index, output.mime),
        THUMBNAIL_PX,
    )


def _stream_private(name: str, *, filename: str, content_type: str, as_attachment: bool) -> HttpResponseBase:
    """A team's stored file for an operator, kept by no cache; on S3 a short-lived signed URL."""
    if isinstance(default_storage, S3Storage):
        url = default_storage.url(name, parameters=signed_file_headers(filename=filename, as_attachment=as_attachment))
        return never_store(HttpResponseRedirect(url))
    response = FileResponse(
        default_storage.open(name, "rb"), filename=filename, content_type=content_type, as_attachment=as_attachment
    )
    return never_store(response)


class JobStateFilter(admin.SimpleListFilter):
    title = "state"
    parameter_name = "state"

    def lookups(self, request: HttpRequest, model_admin: admin.ModelAdmin) -> list[tuple[str, str]]:
        return [
            ("active", "Active (queued or running)"),
            ("stuck", "Stuck (lease expired)"),
            ("paused", "Paused (our infrastructure; waiting to resume)"),
            ("suspect", "Suspect (its worker died under it; runs alone)"),
            ("failed", "Failed"),
            ("not_saved", "Finished, not saved to collection"),
        ]

    def queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet:
        now = timezone.now()
        filters = {
            "active": Q(status__in=ACTIVE_STATUSES),
            "stuck": Q(status=GenerationJob.Status.RUNNING, lease_expires_at__lt=now),
            "paused": Q(status__in=ACTIVE_STATUSES, outage_since__isnull=False),
            "suspect": Q(status__in=ACTIVE_STATUSES, suspect_crashes__gt=0),
            "failed": Q(status=GenerationJob.Status.FAILED),
            "not_saved": Q(status__in=FINISHED_STATUSES, collected_at__isnull=True),
        }
        condition = filters.get(self.value() or "")
        return queryset.filter(condition) if condition is not None else queryset


class OutputInline(admin.TabularInline):
    model = GeneratedOutput
    extra = 0
    can_delete = False
    # a tuple: it types as both `fields` (field groups) and `readonly_fields` (names); a list does not
    fields: ClassVar[tuple[str, ...]] = (
        "number",
        "preview",
        "mime",
        "width",
        "height",
        "bytes",
        "provider_report",
        "carried_from",
        "created_at",
    )
    readonly_fields = fields
    # An output's own URL is its team's route, which answers an operator "not found".
    view_on_site = False

    def has_add_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False

    @admin.display(description="output")
    def number(self, output: GeneratedOutput) -> str:
        return output_label(output.index, output.mime)

    @admin.display(description="preview")
    def preview(self, output: GeneratedOutput) -> SafeString:
        return _thumbnail(output)


# The job page shows first what an operator looks for, then every other column of the row.
_JOB_PAGE_FIRST = ["prompt", "team", "created_by", "status", "progress", "files", "created_at", "finished_at", "id"]


@admin.register(GenerationJob)
class GenerationJobAdmin(admin.ModelAdmin):
    # What an operator scans a list for; the rest (attempts, crashes, lease) is on the job's page.
    list_display = ["prompt_shown", "team", "status", "progress", "created_at", "provider", "error_code", "finished_at"]
    list_display_links = ["prompt_shown"]
    list_filter = [JobStateFilter, "status", "error_code", "provider", "kind"]
    search_fields = ["id", "prompt", "team__name", "created_by__email", "subject_key"]
    list_select_related = ["team"]
    date_hierarchy = "created_at"
    ordering = ["-created_at"]
    inlines = [OutputInline]
    actions = ["cancel_jobs", "retry_jobs"]
    # The stored zip's storage path is no link for people: the Files block offers the zip itself.
    exclude = ["archive"]
    readonly_fields = _JOB_PAGE_FIRST + [
        f.name for f in GenerationJob._meta.fields if f.name not in _JOB_PAGE_FIRST and f.name != "archive"
    ]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: object = None) -> bool:
        # A job is part of the ledger's history (its entries protect it): cancel it, never delete it.
        return False

    @admin.display(description="prompt", ordering="prompt")
    def prompt_shown(self, job: GenerationJob) -> str:
        return truncatechars(job.prompt, PROMPT_SHOWN) or f"(no prompt) {job.id}"

    @admin.display(description="progress")
    def progress(self, job: GenerationJob) -> str:
        return f"{job.completed_outputs} of {job.total_outputs}"

    @admin.display(description="files")
    def files(self, job: GenerationJob) -> SafeString | str:
        outputs = list(job.outputs.all())
        if not outputs:
            return "No images yet."
        noun = "clip" if all(output.mime.startswith("video/") for output in outputs) else "image"
        return format_html(
            '<p><a href="{}" class="button" data-testid="admin-zip">Download zip ({} {}{})</a></p><p>{}</p>',
            reverse("admin:generation_generationjob_download", kwargs={"object_id": job.id}),
            len(outputs),
            noun,
            "" if len(outputs) == 1 else "s",
            format_html_join(" ", "{}", ((_thumbnail(output),) for output in outputs)),
        )

    def change_view(
        self, request: HttpRequest, object_id: str, form_url: str = "", extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        job = self.get_object(request, object_id)
        if job is not None:
            extra_context = {
                **(extra_context or {}),
                # The page is named after the job's prompt rather than its kind and UUID.
                "title": f"Job: {truncatechars(job.prompt, PROMPT_SHOWN)}",
                "subtitle": f"{job.get_kind_display()} job of {job.team}, {job.get_status_display().lower()}",
                "breadcrumb_label": truncatechars(job.prompt, PROMPT_SHOWN),
                # Every field is read-only: a Save button would save nothing. Actions act.
                "show_save": False,
                "show_save_and_continue": False,
            }
        return super().change_view(request, object_id, form_url, extra_context)

    # Both actions change a team's jobs (and a retry spends its credits): "change" on jobs, which
    # a view-only operator lacks. Django re-checks it on every POST of the action.
    @admin.action(description="Cancel the selected jobs", permissions=["change"])
    def cancel_jobs(self, request: HttpRequest, queryset: QuerySet[GenerationJob]) -> None:
        self._apply(request, queryset, lambda job: job_cancel(job=job), "canceled or flagged")

    @admin.action(description="Retry the selected jobs (only their missing images)", permissions=["change"])
    def retry_jobs(self, request: HttpRequest, queryset: QuerySet[GenerationJob]) -> None:
        self._apply(request, queryset, lambda job: job_retry(job=job, user=request.user), "retried")  # type: ignore[arg-type]

    def _apply(self, request: HttpRequest, queryset: QuerySet, action, verb: str) -> None:  # type: ignore[no-untyped-def]
        done = 0
        for job in queryset:
            try:
                action(job)
                done += 1
            except ServiceError as error:
                self.message_user(request, f"{job.id}: {error.message}", messages.WARNING)
        self.message_user(request, f"{done} job(s) {verb}.")

    # A job's files for operators (see the module's docstring). admin_view() lets in active
    # staff only and sends anyone else to the admin's login; the view permission is checked here.
    def get_urls(self) -> list[URLPattern]:
        files = [
            path(
                "<uuid:object_id>/outputs/<int:number>/",
                self.admin_site.admin_view(self.output_view),
                name="generation_generationjob_output",
            ),
            path(
                "<uuid:object_id>/outputs/<int:number>/poster/",
                self.admin_site.admin_view(self.output_poster_view),
                name="generation_generationjob_output_poster",
            ),
            path(
                "<uuid:object_id>/download/",
                self.admin_site.admin_view(self.download_view),
                name="generation_generationjob_download",
            ),
        ]
        return files + super().get_urls()

    def _require_view_permission(self, request: HttpRequest) -> None:
        if not self.has_view_permission(request):
            raise PermissionDenied("A job's files need the generation.view_generationjob permission.")

    def _output(self, request: HttpRequest, job_id: str, number: int) -> GeneratedOutput:
        self._require_view_permission(request)
        return get_object_or_404(GeneratedOutput.objects.select_related("job"), job_id=job_id, index=number - 1)

    def output_view(self, request: HttpRequest, object_id: str, number: int) -> HttpResponseBase:
        output = self._output(request, object_id, number)
        return _stream_private(
            stored_name(output.file),
            filename=output_download_name(prompt=output.job.prompt, index=output.index, mime=output.mime),
            content_type=output.mime,
            as_attachment=False,
        )

    def output_poster_view(self, request: HttpRequest, object_id: str, number: int) -> HttpResponseBase:
        output = self._output(request, object_id, number)
        if not output.poster:
            raise Http404("This output has no poster.")
        return _stream_private(
            stored_name(output.poster),
            filename=poster_download_name(prompt=output.job.prompt, index=output.index),
            content_type="image/png",
            as_attachment=False,
        )

    def download_view(self, request: HttpRequest, object_id: str) -> HttpResponseBase:
        """The job's zip, the same the team downloads (`job_archive_open`): same name, entries
        and dates."""
        self._require_view_permission(request)
        job = get_object_or_404(GenerationJob, id=object_id)
        try:
            archive = job_archive_open(job=job)
        except NothingToDownload as error:
            raise Http404(error.message) from error
        if archive.stored_name:
            return _stream_private(
                archive.stored_name, filename=archive.filename, content_type="application/zip", as_attachment=True
            )
        response = FileResponse(
            archive.built, filename=archive.filename, content_type="application/zip", as_attachment=True
        )
        return never_store(response)


@admin.register(WorkerHeartbeat)
class WorkerHeartbeatAdmin(admin.ModelAdmin):
    """Worker processes and the rescuer: when each last beat, and what it runs."""

    list_display = ["name", "beat_at", "running_jobs", "stopping", "started_at", "up_since", "deaths_seen"]
    ordering = ["-beat_at"]
    readonly_fields = [f.name for f in WorkerHeartbeat._meta.fields]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False


@admin.register(Look)
class LookAdmin(admin.ModelAdmin):
    list_display = ["id", "team", "job", "created_at"]
    list_select_related = ["team", "job"]
    raw_id_fields = ["output", "job"]


@admin.register(InputAsset)
class InputAssetAdmin(admin.ModelAdmin):
    list_display = ["id", "team", "mime", "width", "height", "bytes", "created_at"]
    readonly_fields = ["sha256"]


@admin.register(StudioTab)
class StudioTabAdmin(admin.ModelAdmin):
    list_display = ["title", "user", "team", "position", "updated_at"]


def _removed_column(kind: str) -> Any:
    """A column of the sweeps' list: how many of `kind` a sweep removed."""

    @admin.display(description=KIND_WORDS[kind][1])
    def column(sweep: RetentionSweep) -> int:
        return int(sweep.removed.get(kind, 0))

    return column


@admin.register(RetentionSweep)
class RetentionSweepAdmin(admin.ModelAdmin):
    """What each retention sweep removed (generation/services/retention.py), newest first, with
    the last one in the page's title. Read-only: sweeps are beat's (or `manage.py retention_sweep`)."""

    list_display = [
        "started_at",
        "finished_at",
        *(_removed_column(kind) for kind in KINDS if kind != "delivery_attempts"),
        "size",
        "outcome",
    ]
    ordering = ["-started_at"]
    fields: ClassVar[tuple[str, ...]] = (
        "started_at", "finished_at", "summary", "removed", "bytes_removed", "removed_files", "error",
    )  # fmt: skip
    readonly_fields = fields

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False

    def changelist_view(self, request: HttpRequest, extra_context: dict[str, Any] | None = None) -> HttpResponse:
        last = RetentionSweep.objects.filter(finished_at__isnull=False).order_by("-started_at").first()
        if last is None:
            title = "Retention sweeps: none has run yet"
        else:
            when = timezone.localtime(last.started_at).strftime("%Y-%m-%d %H:%M")
            title = f"Retention sweeps: the last, at {when}, removed {retention_summary(last)}"
            if last.error:
                title += f" ({truncatechars(last.error, 80)})"
        return super().changelist_view(request, {"title": title, **(extra_context or {})})

    @admin.display(description="size")
    def size(self, sweep: RetentionSweep) -> str:
        return filesizeformat(sweep.bytes_removed)

    @admin.display(description="outcome")
    def outcome(self, sweep: RetentionSweep) -> str:
        if sweep.finished_at is None:
            return "running"
        return truncatechars(sweep.error, 80) if sweep.error else "complete"

    @admin.display(description="removed")
    def summary(self, sweep: RetentionSweep) -> str:
        return retention_summary(sweep)

    @admin.display(description="files removed (the first ones)")
    def removed_files(self, sweep: RetentionSweep) -> SafeString | str:
        if not sweep.examples:
            return "None."
        return format_html("<ul>{}</ul>", format_html_join("", "<li>{}</li>", ((name,) for name in sweep.examples)))
