"""The operators' monitor: jobs by state, their images, and cancel/retry actions."""

from __future__ import annotations

from typing import ClassVar

from django.contrib import admin, messages
from django.db.models import Q, QuerySet
from django.http import HttpRequest
from django.urls import reverse
from django.utils import timezone
from django.utils.html import format_html

from generation.errors import ServiceError
from generation.models import (
    ACTIVE_STATUSES,
    FINISHED_STATUSES,
    GeneratedOutput,
    GenerationJob,
    InputAsset,
    Look,
    StudioTab,
    WorkerHeartbeat,
)
from generation.services.lifecycle import job_cancel
from generation.services.retry import job_retry


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
        "index",
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

    def has_add_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False

    @admin.display(description="image")
    def preview(self, output: GeneratedOutput) -> str:
        # A clip previews as its poster frame.
        route = "api:job-output-poster" if output.poster else "api:job-output"
        url = reverse(route, kwargs={"job_id": output.job_id, "number": output.index + 1})
        return format_html('<img src="{}" style="height:64px">', url)


@admin.register(GenerationJob)
class GenerationJobAdmin(admin.ModelAdmin):
    list_display = [
        "id", "status", "progress", "team", "provider", "kind", "attempts", "suspect_crashes", "pauses",
        "error_code", "created_at", "started_at", "finished_at", "lease_expires_at",
    ]  # fmt: skip
    list_filter = [JobStateFilter, "status", "error_code", "provider", "kind"]
    search_fields = ["id", "prompt", "team__name", "created_by__email", "subject_key"]
    list_select_related = ["team"]
    date_hierarchy = "created_at"
    ordering = ["-created_at"]
    inlines = [OutputInline]
    actions = ["cancel_jobs", "retry_jobs"]
    readonly_fields = [f.name for f in GenerationJob._meta.fields]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: object = None) -> bool:
        # A job is part of the ledger's history (its entries protect it): cancel it, never delete it.
        return False

    @admin.display(description="progress")
    def progress(self, job: GenerationJob) -> str:
        return f"{job.completed_outputs} / {job.total_outputs}"

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
