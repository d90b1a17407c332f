from __future__ import annotations

import copy
import hashlib
from typing import Any, cast

from django.urls import reverse
from django.utils.http import quote_etag
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema_field, inline_serializer
from rest_framework import serializers

from config.serializers import FROM_STRINGS as FROM_STRINGS  # the pages and views import it from here
from config.serializers import StrictSerializer
from generation.models import GeneratedOutput, GenerationJob, InputAsset, JobReference, Look, StudioTab
from generation.params import QUALITIES
from generation.providers.catalog import VIDEO, ModelSpec, ProviderSpec
from generation.routes import job_preview_path, job_route
from generation.selectors import (
    JobInputLink,
    QueuePlace,
    QueuePlaces,
    WaitingReason,
    job_credits_of,
    job_input_links,
    job_outputs_of,
)
from generation.services.previews import job_preview


class JobListQuerySerializer(StrictSerializer):
    status = serializers.ChoiceField(choices=GenerationJob.Status.choices, required=False)
    kind = serializers.ChoiceField(choices=GenerationJob.Kind.choices, required=False)
    tab = serializers.IntegerField(required=False, min_value=1, max_value=2**31 - 1)
    limit = serializers.IntegerField(required=False, min_value=1, max_value=100)
    offset = serializers.IntegerField(required=False, min_value=0, max_value=1_000_000_000)


class ActivitySeenSerializer(StrictSerializer):
    ids = serializers.ListField(child=serializers.UUIDField(), required=False, max_length=500)


class AssetUploadSerializer(StrictSerializer):
    file = serializers.FileField(allow_empty_file=False)


def _absolute(request: Any, path: str) -> str:
    if request is None:
        return path
    # The scheme and host are checked (ALLOWED_HOSTS) once per request, not once per link.
    origin = getattr(request, "_atelier_origin", None)
    if origin is None:
        origin = request._atelier_origin = request.build_absolute_uri("/")[:-1]
    return origin + path  # reverse() quoted the path already


class ModelAnswerSerializer(serializers.ModelSerializer):
    # A read-only ModelSerializer whose fields are worked out from the model once per class, not
    # once per answer: DRF builds them for every instance (and deep-copies the declared ones),
    # which cost more than the rest of a job's answer. Each instance still gets fields of its own
    # to bind, as a field keeps its parent (and so the request's context): a plain field is copied
    # (what it shares, its choices and validators, is only read); a field holding other fields (a
    # nested serializer, a list or dict field's child) is deep-copied, as DRF does.
    # (A comment, not a docstring: the schema would show it as each answer's description.)

    def get_fields(self) -> dict[str, serializers.Field]:
        built = type(self).__dict__.get("_fields_built")
        if built is None:
            built = super().get_fields()  # the same for every instance: Meta and declared fields
            type(self)._fields_built = built  # type: ignore[attr-defined]
        return {
            name: copy.deepcopy(field) if isinstance(field, _HOLDS_FIELDS) else copy.copy(field)
            for name, field in built.items()
        }


_HOLDS_FIELDS = (serializers.BaseSerializer, serializers.ListField, serializers.DictField)


class OutputSerializer(ModelAnswerSerializer):
    index = serializers.SerializerMethodField()
    url = serializers.SerializerMethodField()
    poster_url = serializers.SerializerMethodField()
    provider_report = serializers.DictField(
        read_only=True,
        help_text="What the provider reported about this output: model_version, revised_prompt, usage "
        "(token counts), cost, operation; only what it reported.",
    )

    class Meta:
        model = GeneratedOutput
        fields = ["index", "url", "mime", "width", "height", "bytes", "poster_url", "provider_report"]
        read_only_fields = fields  # an answer only: every field is always there

    def to_representation(self, output: GeneratedOutput) -> dict[str, Any]:
        # A poll answers every output every second: the values are read straight rather than
        # through a field each. The declared fields stay the schema; a test holds the two alike.
        return {
            "index": self.get_index(output),
            "url": self.get_url(output),
            "mime": output.mime,
            "width": output.width,
            "height": output.height,
            "bytes": output.bytes,
            "poster_url": self.get_poster_url(output),
            "provider_report": output.provider_report,
        }

    def get_index(self, output: GeneratedOutput) -> int:
        return output.index + 1  # people count images from 1, like the zip's golden-roses-1.png

    @extend_schema_field(OpenApiTypes.URI)
    def get_url(self, output: GeneratedOutput) -> str:
        return _absolute(self.context.get("request"), output_url(output))

    @extend_schema_field(serializers.URLField(allow_null=True))
    def get_poster_url(self, output: GeneratedOutput) -> str | None:
        """A clip's first frame (null for images)."""
        if not output.poster:
            return None
        path = job_route("job-output-poster", output.job_id, output.index + 1)
        return _absolute(self.context.get("request"), path)


def output_url(output: GeneratedOutput) -> str:
    return job_route("job-output", output.job_id, output.index + 1)


class AssetSerializer(ModelAnswerSerializer):
    url = serializers.SerializerMethodField()

    class Meta:
        model = InputAsset
        fields = ["id", "url", "mime", "width", "height", "bytes", "created_at"]
        read_only_fields = fields

    @extend_schema_field(OpenApiTypes.URI)
    def get_url(self, asset: InputAsset) -> str:
        return _absolute(self.context.get("request"), reverse("api:asset-content", kwargs={"asset_id": asset.id}))


class JobProgressSerializer(serializers.Serializer):
    completed = serializers.IntegerField()
    total = serializers.IntegerField()
    current_output_percent = serializers.IntegerField(
        allow_null=True,
        help_text="The provider's own progress (0-100) on the output being made, when it reports one "
        "(Veo clips); null otherwise.",
    )


class JobInputLinkSerializer(serializers.Serializer):
    """A reference or sketch image of a job."""

    asset_id = serializers.UUIDField()
    url = serializers.URLField()
    weight = serializers.FloatField()


class JobInputsSerializer(serializers.Serializer):
    # A declared field, not Field.source (the metaclass moves it off the class); the stubs cannot know.
    source = AssetSerializer(  # type: ignore[assignment]
        allow_null=True, help_text="The image an edit starts from; null for other jobs."
    )
    references = JobInputLinkSerializer(many=True)
    sketch = JobInputLinkSerializer(allow_null=True)


class JobCreditsSerializer(serializers.Serializer):
    per_output = serializers.IntegerField()
    held = serializers.IntegerField()
    captured = serializers.IntegerField()
    released = serializers.IntegerField()


class JobPreviewSerializer(serializers.Serializer):
    """The latest partial image of the image in progress, while the job runs and its provider shows
    one (OpenAI's partial images; the local provider halfway through): short-lived, never billed,
    never in the collection; null otherwise."""

    index = serializers.IntegerField(help_text="The number of the image it previews, counted from 1 like outputs.")
    url = serializers.URLField(help_text="The preview image (`GET /api/v1/jobs/{id}/preview`); new for each preview.")
    at = serializers.DateTimeField(help_text="When it was made.")


class JobErrorSerializer(serializers.Serializer):
    """Why a job failed (null while it has not)."""

    code = serializers.CharField()
    message = serializers.CharField()


class JobSerializer(ModelAnswerSerializer):
    progress = serializers.SerializerMethodField()
    queue_position = serializers.SerializerMethodField()
    waiting_reason = serializers.SerializerMethodField(
        help_text="Why a queued job waits: team_limit (its team runs as many jobs as its cap allows), "
        "provider_limit (its provider is at its rate or concurrency limit) or capacity (its turn "
        "for a free worker); null once it is not queued."
    )
    inputs = serializers.SerializerMethodField()
    outputs = serializers.SerializerMethodField()
    preview = serializers.SerializerMethodField()
    error = serializers.SerializerMethodField()
    credits = serializers.SerializerMethodField()
    links = serializers.SerializerMethodField()
    params = serializers.DictField(read_only=True)
    tab: serializers.PrimaryKeyRelatedField[StudioTab] = serializers.PrimaryKeyRelatedField(
        read_only=True, allow_null=True
    )
    retry_of: serializers.PrimaryKeyRelatedField[GenerationJob] = serializers.PrimaryKeyRelatedField(
        read_only=True, allow_null=True
    )

    class Meta:
        model = GenerationJob
        fields = [
            "id", "kind", "status", "progress", "queue_position", "waiting_reason", "prompt", "optimized_prompt",
            "provider", "model", "params", "inputs", "outputs", "preview", "credits", "error", "attempts", "retry_of",
            "subject_key", "tab", "created_at", "started_at", "finished_at", "links",
        ]  # fmt: skip
        read_only_fields = fields  # an answer only: every field is always there

    @extend_schema_field(JobProgressSerializer)
    def get_progress(self, job: GenerationJob) -> dict[str, int | None]:
        operation = job.provider_operation if job.is_active else {}
        return {
            "completed": job.completed_outputs,
            "total": job.total_outputs,
            "current_output_percent": operation.get("progress"),
        }

    def get_queue_position(self, job: GenerationJob) -> int | None:
        place = self._queue_place(job)
        return place.position if place is not None else None

    @extend_schema_field(serializers.ChoiceField(choices=[reason.value for reason in WaitingReason], allow_null=True))
    def get_waiting_reason(self, job: GenerationJob) -> str | None:
        place = self._queue_place(job)
        return place.waiting_reason.value if place is not None else None

    def _queue_place(self, job: GenerationJob) -> QueuePlace | None:
        return queue_place(job, cast("dict[str, Any]", self.context))  # the dict given, shared with job_etag

    @extend_schema_field(OutputSerializer(many=True))
    def get_outputs(self, job: GenerationJob) -> list[dict]:
        return OutputSerializer(job_outputs_of(job), many=True, context=self.context).data  # type: ignore[return-value]

    @extend_schema_field(JobPreviewSerializer(allow_null=True))
    def get_preview(self, job: GenerationJob) -> dict | None:
        preview = job_preview(job)
        if preview is None:
            return None
        url = _absolute(self.context.get("request"), job_preview_path(job.id, preview.stamp))
        return {"index": preview.number, "url": url, "at": preview.stamp}

    @extend_schema_field(JobInputsSerializer)
    def get_inputs(self, job: GenerationJob) -> dict:
        request = self.context.get("request")
        source = job.source_asset

        def described(link: JobInputLink) -> dict:
            return {
                "asset_id": str(link.asset_id),
                "url": _absolute(request, reverse("api:asset-content", kwargs={"asset_id": link.asset_id})),
                "weight": link.weight,
            }

        links = job_input_links(job)
        sketch = next((link for link in links if link.role == JobReference.Role.SKETCH), None)
        return {
            "source": AssetSerializer(source, context=self.context).data if source else None,
            "references": [described(link) for link in links if link.role == JobReference.Role.REFERENCE],
            "sketch": described(sketch) if sketch else None,
        }

    @extend_schema_field(JobCreditsSerializer)
    def get_credits(self, job: GenerationJob) -> dict[str, int]:
        totals = job_credits_of(job)
        return {
            "per_output": job.credits_per_output,
            "held": totals.held,
            "captured": totals.captured,
            "released": totals.released,
        }

    @extend_schema_field(JobErrorSerializer(allow_null=True))
    def get_error(self, job: GenerationJob) -> dict | None:
        if not job.error_code:
            return None
        return {"code": job.error_code, "message": job.error_message}

    @extend_schema_field(
        inline_serializer(
            "JobLinks", {name: serializers.URLField() for name in ("self", "cancel", "retry", "download")}
        )
    )
    def get_links(self, job: GenerationJob) -> dict[str, str]:
        request = self.context.get("request")
        return {name: _absolute(request, job_route(route, job.id)) for name, route in JOB_LINKS.items()}


JOB_LINKS = {"self": "job-detail", "cancel": "job-cancel", "retry": "job-retry", "download": "job-download"}


def queue_place(job: GenerationJob, context: dict[str, Any]) -> QueuePlace | None:
    """A queued job's place (the one selector, `QueuePlaces`), from one snapshot of the queue per
    answer (kept in the serializer's context), read only if a job in the answer is queued."""
    return context.setdefault("queue_places", QueuePlaces()).of(job)


def job_etag(job: GenerationJob, context: dict[str, Any]) -> str:
    """The version of JobSerializer's answer for a job read by `job_queryset_for_team`, from that row
    alone (no query of its own but the queue snapshot for a queued job). The rest of the answer is
    fixed at submit or moves with these: an output is recorded with completed_outputs, its
    capture with it, a release with the status; a heartbeat or a lease renewal changes nothing shown."""
    credits = job_credits_of(job)
    place = queue_place(job, context)
    version = (
        _absolute(context.get("request"), "/"),  # the links are absolute: one version per host
        job.id, job.status, job.completed_outputs, job.total_outputs, job.attempts, job.error_code,
        job.error_message, job.tab_id, job.retry_of_id, job.started_at, job.finished_at,
        job.provider_operation.get("progress") if job.is_active else None,
        job.preview_at if job.status == GenerationJob.Status.RUNNING else None,
        credits.held, credits.captured, credits.released,
        (place.position, place.waiting_reason.value) if place is not None else None,
    )  # fmt: skip
    return quote_etag(hashlib.sha256(repr(version).encode()).hexdigest()[:32])


class LookSerializer(serializers.ModelSerializer):
    job_id = serializers.UUIDField(source="job.id", read_only=True)
    index = serializers.IntegerField(source="output.index", read_only=True)
    url = serializers.SerializerMethodField()
    mime = serializers.CharField(source="output.mime", read_only=True)
    width = serializers.IntegerField(source="output.width", read_only=True)
    height = serializers.IntegerField(source="output.height", read_only=True)
    prompt = serializers.CharField(source="job.prompt", read_only=True)
    kind = serializers.ChoiceField(source="job.kind", choices=GenerationJob.Kind.choices, read_only=True)
    provider = serializers.CharField(source="job.provider", read_only=True)
    model = serializers.CharField(source="job.model", read_only=True)
    params = serializers.DictField(source="job.params", read_only=True)

    class Meta:
        model = Look
        fields = [
            "id",
            "job_id",
            "index",
            "url",
            "mime",
            "width",
            "height",
            "prompt",
            "kind",
            "provider",
            "model",
            "params",
            "created_at",
        ]

    def to_representation(self, look: Look) -> dict:
        data = super().to_representation(look)
        data["index"] = look.output.index + 1
        return data

    @extend_schema_field(OpenApiTypes.URI)
    def get_url(self, look: Look) -> str:
        return _absolute(self.context.get("request"), output_url(look.output))


class ModelSpecSerializer(serializers.Serializer):
    """One model of the registry (generation/providers/catalog.py)."""

    id = serializers.CharField()
    label = serializers.CharField()  # type: ignore[assignment]  # a declared field, not Field.label
    kinds = serializers.SerializerMethodField()
    aspect_ratios = serializers.ListField(child=serializers.CharField())
    qualities = serializers.SerializerMethodField()
    options = serializers.SerializerMethodField(
        help_text="The params.* options this model accepts beyond style, quality and aspect_ratio."
    )
    backgrounds = serializers.ListField(child=serializers.CharField())
    output_formats = serializers.ListField(child=serializers.CharField())
    durations = serializers.ListField(child=serializers.IntegerField(), help_text="Clip lengths in seconds (video).")
    max_outputs = serializers.IntegerField()
    max_references = serializers.IntegerField()
    accepts_mask = serializers.BooleanField()
    credits = serializers.DictField(child=serializers.IntegerField(), help_text="Credits by quality.")
    credits_unit = serializers.SerializerMethodField()
    note = serializers.CharField()

    def get_kinds(self, model: ModelSpec) -> list[str]:
        return sorted(model.kinds)

    def get_qualities(self, model: ModelSpec) -> list[str]:
        return list(QUALITIES)

    def get_options(self, model: ModelSpec) -> list[str]:
        return sorted(option.value for option in model.options)

    @extend_schema_field(serializers.ChoiceField(choices=["output", "second"]))
    def get_credits_unit(self, model: ModelSpec) -> str:
        return "second" if VIDEO in model.kinds else "output"


class ProviderCatalogSerializer(serializers.Serializer):
    name = serializers.CharField()
    label = serializers.CharField()  # type: ignore[assignment]  # a declared field, not Field.label
    default_model = serializers.SerializerMethodField()
    models = ModelSpecSerializer(many=True)

    def get_default_model(self, provider: ProviderSpec) -> str:
        return provider.default_model.id
