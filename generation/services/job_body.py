"""A job's body (`POST /api/v1/jobs`, the studio's draft): validated into a `JobSpec` here, where
both the API views and the studio pages read it (pages do not import from generation/api/)."""

from __future__ import annotations

from django.conf import settings
from rest_framework import serializers

from config.serializers import StrictSerializer
from generation.models import GenerationJob
from generation.params import API_DEFAULT_STYLE, ASPECT_RATIOS, DEFAULT_QUALITY, QUALITIES, STYLES
from generation.providers.catalog import BACKGROUNDS, OUTPUT_FORMATS, PROVIDERS
from generation.services.submit import JobSpec, ReferenceSpec


class ParamsSerializer(StrictSerializer):
    # The metaclass moves declared fields off the class, so this does not clash with Field.style
    # at runtime; the stubs cannot know that.
    style = serializers.ChoiceField(  # type: ignore[assignment]
        choices=list(STYLES),
        default=API_DEFAULT_STYLE,
        help_text="What is added to the prompt: none sends it as written; the others add their words "
        "and the quality's cue (see the estimate's optimized_prompt).",
    )
    quality = serializers.ChoiceField(choices=QUALITIES, default=DEFAULT_QUALITY)
    # No default: each model has its own (the first it makes; 16:9 for clips).
    aspect_ratio = serializers.ChoiceField(choices=ASPECT_RATIOS, required=False)
    seed = serializers.IntegerField(min_value=0, max_value=2**31 - 1, required=False)
    guidance_scale = serializers.FloatField(min_value=0, max_value=30, required=False)
    steps = serializers.IntegerField(min_value=1, max_value=150, required=False)
    strength = serializers.FloatField(min_value=0, max_value=1, required=False)
    negative_prompt = serializers.CharField(max_length=1000, required=False, allow_blank=True)
    background = serializers.ChoiceField(choices=BACKGROUNDS, required=False)
    output_format = serializers.ChoiceField(choices=OUTPUT_FORMATS, required=False)
    duration_seconds = serializers.IntegerField(min_value=1, max_value=60, required=False)


class ReferenceInputSerializer(StrictSerializer):
    asset_id = serializers.UUIDField()
    weight = serializers.FloatField(min_value=0, max_value=1, default=0.5)


class InputsSerializer(StrictSerializer):
    source_asset_id = serializers.UUIDField(required=False, allow_null=True)
    # many=True makes a ListSerializer, which takes max_length; the stubs check the child's kwargs.
    references = ReferenceInputSerializer(many=True, required=False, max_length=4)  # type: ignore[call-arg]
    sketch = ReferenceInputSerializer(required=False, allow_null=True)
    # An edit's mask (an uploaded PNG with transparency), for models that take one.
    mask_asset_id = serializers.UUIDField(required=False, allow_null=True)


class JobCreateSerializer(StrictSerializer):
    prompt = serializers.CharField(max_length=4000, trim_whitespace=True)
    kind = serializers.ChoiceField(choices=GenerationJob.Kind.choices, default=GenerationJob.Kind.IMAGE)
    provider = serializers.ChoiceField(choices=list(PROVIDERS), required=False)
    model = serializers.CharField(max_length=60, required=False, allow_blank=True, default="")
    count = serializers.IntegerField(min_value=1, max_value=settings.GENERATION_MAX_OUTPUTS, default=1)
    params = ParamsSerializer(required=False)
    inputs = InputsSerializer(required=False)
    subject_key = serializers.CharField(max_length=200, required=False, allow_blank=True, default="")
    tab = serializers.IntegerField(required=False, allow_null=True, min_value=1, max_value=2**31 - 1)

    def to_spec(self) -> JobSpec:
        data = self.validated_data
        params = dict(data.get("params") or ParamsSerializer().to_internal_value({}))
        inputs = data.get("inputs") or {}
        return JobSpec(
            prompt=data["prompt"],
            kind=data["kind"],
            provider=data.get("provider") or settings.GENERATION_DEFAULT_PROVIDER,
            model=data["model"],
            count=data["count"],
            params=params,
            source_asset_id=inputs.get("source_asset_id"),
            references=tuple(
                ReferenceSpec(asset_id=ref["asset_id"], weight=ref["weight"]) for ref in inputs.get("references", [])
            )
            + (
                (ReferenceSpec(asset_id=sketch["asset_id"], weight=sketch["weight"], role="sketch"),)
                if (sketch := inputs.get("sketch"))
                else ()
            )
            + (
                (ReferenceSpec(asset_id=mask, weight=1.0, role="mask"),)
                if (mask := inputs.get("mask_asset_id"))
                else ()
            ),
            subject_key=data["subject_key"],
            tab_id=data.get("tab"),
        )
