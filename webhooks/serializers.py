"""The webhook endpoints and their delivery logs as the API shows them, and the bodies it takes."""

from __future__ import annotations

from typing import Any

from django.core.validators import RegexValidator
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from config.serializers import StrictSerializer
from generation.models import JobEvent
from webhooks.endpoints import DESCRIPTION_MAX, URL_MAX
from webhooks.models import WebhookAttempt, WebhookDelivery, WebhookEndpoint
from webhooks.payloads import webhook_id

_EVENTS_HELP = (
    "The event types sent to the endpoint (job.started, job.output, job.succeeded, job.failed, "
    "job.canceled); empty: every type, including types added later."
)
# Said in the schema too (`pattern`); the rest of what a URL must be is webhooks/addresses.py's
# to judge, with a sentence why (`url_refusal`).
_HTTP_URL = RegexValidator(r"^[Hh][Tt][Tt][Pp][Ss]?://", message="Only http and https URLs can receive webhooks.")
_URL_HELP = (
    "An http or https URL whose host resolves to public addresses only (a user name or password in it is "
    "refused); redirects are not followed."
)
# Not trimmed here (the schema's lengths and pattern are of what is sent); the service trims.
_DESCRIPTION_HELP = "What receives the events, for people; spaces around it are dropped."
_DISABLED_REASONS = [
    choice for choice in WebhookEndpoint.DisabledReason.choices if choice[0] != WebhookEndpoint.DisabledReason.NONE
]


def _event_types_field(**kwargs: Any) -> serializers.ListField:
    return serializers.ListField(
        child=serializers.ChoiceField(choices=JobEvent.Type.choices), help_text=_EVENTS_HELP, **kwargs
    )


class WebhookEndpointSerializer(serializers.ModelSerializer):
    # A string, not `format: uri`: the URL is kept as the team gave it (an international host
    # name, say), which a strict URI reader would not take.
    url = serializers.CharField(read_only=True)
    events = _event_types_field(read_only=True)
    disabled_reason = serializers.ChoiceField(
        choices=_DISABLED_REASONS,
        allow_null=True,
        read_only=True,
        help_text="Null while enabled; `team`: disabled by the team; `failing`: disabled automatically after "
        "its deliveries kept failing (enable it again once the receiver is fixed).",
    )
    failing_since = serializers.DateTimeField(
        read_only=True, allow_null=True, help_text="Since when every attempt has failed; null after a success."
    )

    class Meta:
        model = WebhookEndpoint
        fields = [
            "id", "url", "events", "description", "enabled", "disabled_reason", "disabled_at",
            "failing_since", "consecutive_failures", "last_success_at", "created_at",
        ]  # fmt: skip
        read_only_fields = fields

    def to_representation(self, instance: WebhookEndpoint) -> dict[str, Any]:
        data: dict[str, Any] = super().to_representation(instance)
        data["disabled_reason"] = instance.disabled_reason or None
        return data


class WebhookEndpointCreatedSerializer(WebhookEndpointSerializer):
    secret = serializers.CharField(
        read_only=True,
        help_text="The signing secret (`whsec_` and base64), for verifying the `webhook-signature` header: "
        "shown in this answer only, never again.",
    )

    class Meta(WebhookEndpointSerializer.Meta):
        fields = [*WebhookEndpointSerializer.Meta.fields, "secret"]
        read_only_fields = fields


class WebhookEndpointCreateSerializer(StrictSerializer):
    url = serializers.CharField(max_length=URL_MAX, validators=[_HTTP_URL], trim_whitespace=False, help_text=_URL_HELP)
    events = _event_types_field(required=False, allow_empty=True)
    description = serializers.CharField(
        max_length=DESCRIPTION_MAX, required=False, allow_blank=True, trim_whitespace=False, help_text=_DESCRIPTION_HELP
    )


class WebhookEndpointUpdateSerializer(StrictSerializer):
    url = serializers.CharField(
        max_length=URL_MAX, required=False, validators=[_HTTP_URL], trim_whitespace=False, help_text=_URL_HELP
    )
    events = _event_types_field(required=False, allow_empty=True)
    description = serializers.CharField(
        max_length=DESCRIPTION_MAX, required=False, allow_blank=True, trim_whitespace=False, help_text=_DESCRIPTION_HELP
    )
    enabled = serializers.BooleanField(
        required=False,
        help_text="false stops deliveries; true starts them again and clears the record of failed deliveries "
        "(also of an endpoint disabled automatically).",
    )


class WebhookAttemptSerializer(serializers.ModelSerializer):
    class Meta:
        model = WebhookAttempt
        fields = ["number", "started_at", "duration_ms", "status_code", "error", "response_body"]
        read_only_fields = fields
        extra_kwargs = {
            "status_code": {"help_text": "The receiver's HTTP status; null when no answer came."},
            "error": {"help_text": "What went wrong, in words; empty for a delivered attempt."},
            "response_body": {"help_text": "The start of the receiver's answer."},
        }


class WebhookDeliverySerializer(serializers.ModelSerializer):
    event_id = serializers.SerializerMethodField(
        help_text="The `webhook-id` header of every request of this delivery (`evt_<n>`): one per event, the "
        "same on retries and on send again."
    )
    event_type = serializers.ChoiceField(choices=JobEvent.Type.choices, source="event.type", read_only=True)
    job_id = serializers.UUIDField(source="event.job_id", read_only=True)
    attempts = serializers.IntegerField(
        read_only=True, help_text="Attempts of the current round (send again starts a new one)."
    )
    next_attempt_at = serializers.SerializerMethodField(help_text="When the next attempt is due; null unless pending.")
    attempt_log = WebhookAttemptSerializer(many=True, read_only=True, help_text="Every attempt, oldest first.")

    class Meta:
        model = WebhookDelivery
        fields = [
            "id", "event_id", "event_type", "job_id", "status", "attempts", "last_status_code", "last_error",
            "next_attempt_at", "delivered_at", "created_at", "attempt_log",
        ]  # fmt: skip
        read_only_fields = fields

    def get_event_id(self, delivery: WebhookDelivery) -> str:
        return webhook_id(delivery.event)

    @extend_schema_field(serializers.DateTimeField(allow_null=True))
    def get_next_attempt_at(self, delivery: WebhookDelivery) -> str | None:
        if delivery.status != WebhookDelivery.Status.PENDING or delivery.next_attempt_at is None:
            return None
        return serializers.DateTimeField().to_representation(delivery.next_attempt_at)
