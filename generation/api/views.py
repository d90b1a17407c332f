"""REST API v1: thin views. Parse and validate, call one service, serialize."""

from __future__ import annotations

from uuid import UUID

from django.core.files.storage import default_storage
from django.http import FileResponse, Http404, HttpResponseBase, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.utils.cache import get_conditional_response
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema, inline_serializer
from rest_framework import serializers, status
from rest_framework.parsers import MultiPartParser
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView
from storages.backends.s3 import S3Storage

from accounts.permissions import request_team
from accounts.quotas import QuotaExceeded
from config.cache_control import never_store
from config.errors import ServerBusy
from config.pagination import BoundedLimitOffsetPagination
from config.schema import error_responses
from config.throttles import RateScope
from credits.services import InsufficientCredits
from generation.api.ranges import RANGE_HEADER, FileNegotiation, file_responses, ranged_file_response
from generation.api.serializers import (
    FROM_STRINGS,
    ActivitySeenSerializer,
    AssetSerializer,
    AssetUploadSerializer,
    JobListQuerySerializer,
    JobSerializer,
    LookSerializer,
    ProviderCatalogSerializer,
    job_etag,
)
from generation.errors import IdempotencyConflict, InvalidJobStatus, NothingToDownload, ValidationFailed
from generation.models import GeneratedOutput, GenerationJob, InputAsset, Look
from generation.providers.catalog import configured_providers
from generation.selectors import (
    activity_for_user,
    job_list_for_team,
    job_queryset_for_team,
    look_list_for_team,
)
from generation.services.archives import job_archive_open
from generation.services.assets import asset_upload
from generation.services.files import (
    output_download_name,
    poster_download_name,
    preview_download_name,
    signed_file_headers,
    stored_name,
)
from generation.services.job_body import JobCreateSerializer
from generation.services.lifecycle import activity_mark_seen, job_cancel
from generation.services.previews import job_preview
from generation.services.retry import job_retry
from generation.services.submit import SubmitOutcome, job_estimate, job_submit
from generation.uploads import oversized_uploads, too_large_message

IDEMPOTENCY_KEY_MAX = 200
IMAGE_TYPES = ("image/png", "image/jpeg", "image/webp")  # what uploads and image outputs may be


def _job_for_team(request: Request, job_id: UUID) -> GenerationJob:
    # Another team's job is "not found", never "forbidden": ids of other teams are not confirmed.
    return get_object_or_404(job_queryset_for_team(request_team(request)), id=job_id)


IF_NONE_MATCH = OpenApiParameter(
    "If-None-Match",
    str,
    OpenApiParameter.HEADER,
    required=False,
    description="The `ETag` of an earlier answer: a 304 with no body when the job has not changed since",
)
ETAG = OpenApiParameter(
    "ETag",
    str,
    OpenApiParameter.HEADER,
    response=[200, 304],
    description="The version of the job's answer, for `If-None-Match`",
)


def _job_response(request: Request, job: GenerationJob, status_code: int) -> Response:
    job = _job_for_team(request, job.id)  # reload with all the answer shows, in one query
    response = Response(JobSerializer(job, context={"request": request}).data, status=status_code)
    response["Location"] = request.build_absolute_uri(f"/api/v1/jobs/{job.id}")
    return response


class JobListCreateView(APIView):
    pagination_class = BoundedLimitOffsetPagination  # GET; the schema shows the page's envelope
    throttle_scopes = {"POST": RateScope.SUBMIT}  # a submit holds credits; the list is a read

    @extend_schema(
        parameters=[JobListQuerySerializer],
        responses=JobSerializer(many=True),
        summary="The team's jobs, newest first",
    )
    def get(self, request: Request) -> Response:
        query = JobListQuerySerializer(data=request.query_params.dict(), context={FROM_STRINGS: True})
        query.is_valid(raise_exception=True)
        jobs = job_list_for_team(
            team=request_team(request),
            status=query.validated_data.get("status"),
            kind=query.validated_data.get("kind"),
            tab_id=query.validated_data.get("tab"),
        )
        paginator = self.pagination_class()
        page = paginator.paginate_queryset(jobs, request, view=self)
        return paginator.get_paginated_response(JobSerializer(page, many=True, context={"request": request}).data)

    @extend_schema(
        request=JobCreateSerializer,
        parameters=[
            OpenApiParameter(
                "Idempotency-Key",
                {"type": "string", "maxLength": IDEMPOTENCY_KEY_MAX},
                OpenApiParameter.HEADER,
                required=False,
                description="The same key and body again answer the first job; another body is a 422",
            )
        ],
        responses={
            202: JobSerializer,
            200: JobSerializer,
            **error_responses(
                (InsufficientCredits, "the team's available credits do not cover the job (`required`, `available`)"),
                (QuotaExceeded, "the team's queued and running jobs fill its quota"),
                (IdempotencyConflict, "the Idempotency-Key was used with a different body"),
            ),
        },
        summary="Start a generation (202); an active job for the same subject_key is returned (200)",
    )
    def post(self, request: Request) -> Response:
        idempotency_key = request.headers.get("Idempotency-Key", "").strip()
        if len(idempotency_key) > IDEMPOTENCY_KEY_MAX:
            raise serializers.ValidationError({"Idempotency-Key": [f"At most {IDEMPOTENCY_KEY_MAX} characters."]})
        serializer = JobCreateSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        result = job_submit(
            team=request_team(request),
            user=request.user,  # type: ignore[arg-type]
            spec=serializer.to_spec(),
            idempotency_key=idempotency_key,
        )
        # A replay answers like the original; an active job for the subject is a plain 200.
        code = status.HTTP_200_OK if result.outcome is SubmitOutcome.ACTIVE_SUBJECT else status.HTTP_202_ACCEPTED
        response = _job_response(request, result.job, code)
        if result.replayed:
            response["Idempotent-Replayed"] = "true"
        return response


class JobEstimateView(APIView):
    throttle_scopes = {"POST": RateScope.ESTIMATE}

    @extend_schema(
        request=JobCreateSerializer,
        responses=inline_serializer(
            "Estimate",
            {
                "provider": serializers.CharField(),
                "model": serializers.CharField(),
                "outputs": serializers.IntegerField(),
                "credits_per_output": serializers.IntegerField(),
                "credits": serializers.IntegerField(),
                "optimized_prompt": serializers.CharField(),
            },
        ),
        summary="What a job would be, without creating anything",
    )
    def post(self, request: Request) -> Response:
        serializer = JobCreateSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        estimate = job_estimate(spec=serializer.to_spec())
        return Response(
            {
                "provider": estimate.provider,
                "model": estimate.model,
                "outputs": estimate.outputs,
                "credits_per_output": estimate.credits_per_output,
                "credits": estimate.credits,
                "optimized_prompt": estimate.optimized_prompt,
            }
        )


class JobDetailView(APIView):
    @extend_schema(
        parameters=[IF_NONE_MATCH, ETAG],
        responses={
            200: JobSerializer,
            304: OpenApiResponse(description="The job has not changed since the answer of the `If-None-Match` ETag"),
        },
        summary="One job with its progress and outputs",
        description="A poll sends the last answer's `ETag` in `If-None-Match`: while nothing shown has changed "
        "the answer is a 304 with no body. Answers are `Cache-Control: private, no-store`, so a browser or "
        "proxy keeps no copy: the client keeps the body and the ETag itself.",
    )
    def get(self, request: Request, job_id: UUID) -> HttpResponseBase:
        job = _job_for_team(request, job_id)  # one row with all the answer shows, outputs included
        context = {"request": request}
        etag = job_etag(job, context)
        response = get_conditional_response(request, etag=etag)
        if response is None:
            response = Response(JobSerializer(job, context=context).data)
        response["ETag"] = etag
        return response


class JobCancelView(APIView):
    @extend_schema(
        request=None,
        responses={200: JobSerializer, **error_responses((InvalidJobStatus, "the job has already finished"))},
        summary="Cancel a queued or running job",
    )
    def post(self, request: Request, job_id: UUID) -> Response:
        job = job_cancel(job=_job_for_team(request, job_id))
        return _job_response(request, job, status.HTTP_200_OK)


class JobRetryView(APIView):
    throttle_scopes = {"POST": RateScope.SUBMIT}  # a retry holds credits like a submit

    @extend_schema(
        request=None,
        responses={
            201: JobSerializer,
            200: JobSerializer,
            **error_responses(
                (InsufficientCredits, "the team's available credits do not cover the missing images"),
                (InvalidJobStatus, "only a failed or canceled job is retried"),
                (QuotaExceeded, "the team's queued and running jobs fill its quota"),
            ),
        },
        summary="A new job that makes only the images a failed or canceled job lacks",
    )
    def post(self, request: Request, job_id: UUID) -> Response:
        retry, created = job_retry(job=_job_for_team(request, job_id), user=request.user)  # type: ignore[arg-type]
        return _job_response(request, retry, status.HTTP_201_CREATED if created else status.HTTP_200_OK)


def _stream_from_storage(
    request: Request, name: str, *, filename: str, content_type: str, as_attachment: bool
) -> HttpResponseBase:
    """A team's private file: kept by no cache, neither our answer nor the bucket's."""
    if isinstance(default_storage, S3Storage):
        # A signed, short-lived URL: no bytes through the web process. The bucket answers it with
        # our Cache-Control and file name too, as S3 takes response headers as signed parameters.
        url = default_storage.url(name, parameters=signed_file_headers(filename=filename, as_attachment=as_attachment))
        return never_store(HttpResponseRedirect(url))
    return never_store(
        ranged_file_response(
            name,
            range_header=request.headers.get("Range", ""),
            filename=filename,
            content_type=content_type,
            as_attachment=as_attachment,
        )
    )


class JobDownloadView(APIView):
    content_negotiation_class = FileNegotiation

    @extend_schema(
        parameters=[RANGE_HEADER],
        responses={
            **file_responses(
                ("application/zip",),
                "The job's images (or clips), downloaded as `<prompt>.zip` and named after the prompt "
                "and their number: golden-roses-at-dusk-1.png, golden-roses-at-dusk-2.png, ...",
            ),
            **error_responses((NothingToDownload, "the job has no images yet")),
        },
        summary="A zip of the job's images",
    )
    def get(self, request: Request, job_id: UUID) -> HttpResponseBase:
        archive = job_archive_open(job=_job_for_team(request, job_id))
        if archive.stored_name:
            return _stream_from_storage(
                request,
                archive.stored_name,
                filename=archive.filename,
                content_type="application/zip",
                as_attachment=True,
            )
        response = FileResponse(
            archive.built, filename=archive.filename, content_type="application/zip", as_attachment=True
        )
        return never_store(response)


def _output_for_team(request: Request, job_id: UUID, number: int) -> GeneratedOutput:
    return get_object_or_404(
        GeneratedOutput.objects.select_related("job"), job__team=request_team(request), job_id=job_id, index=number - 1
    )


class JobOutputView(APIView):
    content_negotiation_class = FileNegotiation

    @extend_schema(
        parameters=[RANGE_HEADER],
        responses=file_responses(IMAGE_TYPES + ("video/mp4",), "The image, or the clip of a video job"),
        summary="One output: an image or a clip",
    )
    def get(self, request: Request, job_id: UUID, number: int) -> HttpResponseBase:
        output = _output_for_team(request, job_id, number)
        return _stream_from_storage(
            request,
            stored_name(output.file),
            filename=output_download_name(prompt=output.job.prompt, index=output.index, mime=output.mime),
            content_type=output.mime,
            as_attachment=False,
        )


class JobOutputPosterView(APIView):
    content_negotiation_class = FileNegotiation

    @extend_schema(
        parameters=[RANGE_HEADER],
        responses=file_responses(("image/png",), "The clip's first frame"),
        summary="The poster frame of a clip (404 for an image)",
    )
    def get(self, request: Request, job_id: UUID, number: int) -> HttpResponseBase:
        output = _output_for_team(request, job_id, number)
        if not output.poster:
            raise Http404("This output has no poster.")
        return _stream_from_storage(
            request,
            stored_name(output.poster),
            filename=poster_download_name(prompt=output.job.prompt, index=output.index),
            content_type="image/png",
            as_attachment=False,
        )


PREVIEW_AT = OpenApiParameter(
    "at",
    str,
    OpenApiParameter.QUERY,
    required=False,
    description="When the preview was made, as the job's `preview.at` says: it only makes each preview's URL "
    "new. The answer is always the job's latest preview.",
)


class JobPreviewView(APIView):
    content_negotiation_class = FileNegotiation

    @extend_schema(
        parameters=[PREVIEW_AT, RANGE_HEADER],
        responses=file_responses(IMAGE_TYPES, "The latest partial image of the image in progress"),
        summary="The live preview of a running job's image in progress",
        description="While a job runs, a provider that shows an image forming (OpenAI's partial images, the "
        "local provider halfway through) leaves its latest partial image here; the job's `preview` links to it. "
        "It is short-lived, never billed and never in the collection. 404 `NOT_FOUND` when the job shows no "
        "preview (not running, nothing shown yet, or the image just arrived).",
    )
    def get(self, request: Request, job_id: UUID) -> HttpResponseBase:
        job = get_object_or_404(GenerationJob.objects.filter(team=request_team(request)), id=job_id)
        preview = job_preview(job)
        if preview is None:
            raise Http404("The job shows no preview now.")
        try:
            return _stream_from_storage(
                request,
                preview.name,
                filename=preview_download_name(prompt=job.prompt, index=preview.index, mime=preview.mime),
                content_type=preview.mime,
                as_attachment=False,
            )
        except FileNotFoundError:
            # Replaced by a newer preview, or its image arrived, between the row and the file.
            raise Http404("The preview was just replaced; the job links to the current one.") from None


class AssetUploadView(APIView):
    parser_classes = [MultiPartParser]
    throttle_scopes = {"POST": RateScope.UPLOAD}

    @extend_schema(
        request={"multipart/form-data": AssetUploadSerializer},
        responses={
            201: AssetSerializer,
            200: OpenApiResponse(
                AssetSerializer,
                description="The team already has this very file (same SHA-256): its asset, stored once, "
                "which does not count against the upload quotas again",
            ),
            **error_responses(
                (QuotaExceeded, "the team's uploads fill its quota of images or megabytes"),
                (ServerBusy, "no memory free to check the image now; send it again after Retry-After seconds"),
            ),
        },
        summary="Upload a source or reference image (201); the same file again answers its asset (200)",
    )
    def post(self, request: Request) -> Response:
        data = request.data  # parsing runs the upload handlers, which note a too-large file
        if "file" in oversized_uploads(request._request):
            raise ValidationFailed({"file": [too_large_message()]})
        serializer = AssetUploadSerializer(data=data)
        serializer.is_valid(raise_exception=True)
        result = asset_upload(team=request_team(request), user=request.user, upload=serializer.validated_data["file"])  # type: ignore[arg-type]
        return Response(
            AssetSerializer(result.asset, context={"request": request}).data,
            status=status.HTTP_201_CREATED if result.created else status.HTTP_200_OK,
        )


class AssetContentView(APIView):
    content_negotiation_class = FileNegotiation

    @extend_schema(parameters=[RANGE_HEADER], responses=file_responses(IMAGE_TYPES, "The uploaded image"))
    def get(self, request: Request, asset_id: UUID) -> HttpResponseBase:
        asset = get_object_or_404(InputAsset, team=request_team(request), id=asset_id)
        name = stored_name(asset.file)
        return _stream_from_storage(
            request, name, filename=name.rsplit("/", 1)[-1], content_type=asset.mime, as_attachment=False
        )


class ActivityView(APIView):
    @extend_schema(
        responses=inline_serializer(
            "Activity", {"active": JobSerializer(many=True), "unseen_finished": JobSerializer(many=True)}
        ),
        summary="My active jobs and the finished ones I have not seen",
    )
    def get(self, request: Request) -> Response:
        activity = activity_for_user(team=request_team(request), user=request.user)  # type: ignore[arg-type]
        context = {"request": request}
        return Response({name: JobSerializer(jobs, many=True, context=context).data for name, jobs in activity.items()})


class ActivitySeenView(APIView):
    @extend_schema(
        request=ActivitySeenSerializer,
        responses=inline_serializer("Seen", {"marked": serializers.IntegerField()}),
        summary="Mark finished jobs seen (the given ids, or all)",
    )
    def post(self, request: Request) -> Response:
        serializer = ActivitySeenSerializer(data=request.data)  # no body is {}; a `null` one is refused
        serializer.is_valid(raise_exception=True)
        marked = activity_mark_seen(
            user=request.user,  # type: ignore[arg-type]
            team_id=request_team(request).id,
            job_ids=serializer.validated_data.get("ids"),
        )
        return Response({"marked": marked})


class LookListView(APIView):
    pagination_class = BoundedLimitOffsetPagination  # the schema shows the page's envelope

    @extend_schema(responses=LookSerializer(many=True), summary="The team's collection, newest first")
    def get(self, request: Request) -> Response:
        paginator = self.pagination_class()
        page = paginator.paginate_queryset(look_list_for_team(team=request_team(request)), request, view=self)
        return paginator.get_paginated_response(LookSerializer(page, many=True, context={"request": request}).data)


class LookDetailView(APIView):
    def _look(self, request: Request, look_id: UUID) -> Look:
        return get_object_or_404(look_list_for_team(team=request_team(request)), id=look_id)

    @extend_schema(responses=LookSerializer)
    def get(self, request: Request, look_id: UUID) -> Response:
        return Response(LookSerializer(self._look(request, look_id), context={"request": request}).data)

    @extend_schema(responses={204: None}, summary="Remove a look from the collection (the job keeps its image)")
    def delete(self, request: Request, look_id: UUID) -> Response:
        self._look(request, look_id).delete()
        return Response(status=status.HTTP_204_NO_CONTENT)


class ModelListView(APIView):
    @extend_schema(
        responses=ProviderCatalogSerializer(many=True),
        summary="The providers enabled here, with their models, options, limits and prices",
        description=(
            "A provider whose credentials are not set is absent. Prices are credits per output, or per second "
            "of clip for video models (`credits_unit`)."
        ),
    )
    def get(self, request: Request) -> Response:
        return Response(ProviderCatalogSerializer(configured_providers(), many=True).data)
