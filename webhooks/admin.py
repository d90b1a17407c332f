"""Webhooks for operators: every team's endpoints and their health, the deliveries with their
attempts, and "send again". An endpoint's signing secret is never shown, nor editable: it is the
team's, shown to them once. Changes go through the services (webhooks/endpoints.py), so enabling
an endpoint here clears its failure streak as the team's page does."""

from __future__ import annotations

from typing import ClassVar

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest
from django.template.defaultfilters import truncatechars
from django.urls import reverse
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString

from generation.models import JobEvent
from webhooks.endpoints import (
    DeliveryGone,
    EndpointDisabled,
    endpoint_delivery_resend,
    endpoint_disable,
    endpoint_enable,
)
from webhooks.models import WebhookAttempt, WebhookDelivery, WebhookEndpoint
from webhooks.payloads import webhook_id

RECENT_DELIVERIES = 20  # on an endpoint's page; the rest are one link away
ERROR_SHOWN = 80


def _delivery_list_url(**filters: object) -> str:
    query = "&".join(f"{name}={value}" for name, value in filters.items())
    return f"{reverse('admin:webhooks_webhookdelivery_changelist')}?{query}"


@admin.register(WebhookEndpoint)
class WebhookEndpointAdmin(admin.ModelAdmin):
    list_display = ["url_shown", "team", "enabled", "disabled_reason", "failing_since", "last_success_at", "created_at"]
    list_display_links = ["url_shown"]
    list_filter = ["enabled", "disabled_reason"]
    search_fields = ["url", "description", "team__name"]
    list_select_related = ["team"]
    ordering = ["-created_at"]
    actions = ["enable_endpoints", "disable_endpoints"]
    # Everything but the secret, read-only: the actions change what may change.
    fields: ClassVar[tuple[str, ...]] = (
        "url", "team", "description", "events", "enabled", "disabled_reason", "disabled_at", "failing_since",
        "consecutive_failures", "last_success_at", "created_by", "created_at", "id", "recent_deliveries",
    )  # fmt: skip
    readonly_fields = fields

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # an endpoint's secret is shown to its team once: the team adds its endpoints

    @admin.display(description="URL", ordering="url")
    def url_shown(self, endpoint: WebhookEndpoint) -> str:
        return truncatechars(endpoint.url, 80)

    @admin.display(description="recent deliveries")
    def recent_deliveries(self, endpoint: WebhookEndpoint) -> SafeString | str:
        deliveries = list(
            WebhookDelivery.objects.filter(endpoint=endpoint)
            .select_related("event")
            .order_by("-created_at", "-id")[:RECENT_DELIVERIES]
        )
        if not deliveries:
            return "None yet."
        rows = format_html_join(
            "",
            '<tr><td><a href="{}">{}</a></td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>',
            (
                (
                    reverse("admin:webhooks_webhookdelivery_change", args=[delivery.id]),
                    delivery.event.type,
                    delivery.get_status_display(),
                    delivery.attempts,
                    delivery.last_status_code or "",
                    truncatechars(delivery.last_error, ERROR_SHOWN),
                    delivery.created_at.strftime("%Y-%m-%d %H:%M:%S"),
                )
                for delivery in deliveries
            ),
        )
        return format_html(
            '<table data-testid="admin-endpoint-deliveries"><thead><tr><th>event</th><th>status</th><th>attempts</th>'
            "<th>last status</th><th>last error</th><th>created</th></tr></thead><tbody>{}</tbody></table>"
            '<p><a href="{}">All deliveries of this endpoint</a></p>',
            rows,
            _delivery_list_url(endpoint__id__exact=endpoint.id),
        )

    # Both change an endpoint: "change" on endpoints, which a view-only operator lacks. Django
    # re-checks it on every POST of the action.
    @admin.action(description="Enable the selected endpoints (clears their failures)", permissions=["change"])
    def enable_endpoints(self, request: HttpRequest, queryset: QuerySet[WebhookEndpoint]) -> None:
        for endpoint in queryset:
            endpoint_enable(endpoint=endpoint)
        self.message_user(request, f"{len(queryset)} endpoint(s) enabled.")

    @admin.action(description="Disable the selected endpoints", permissions=["change"])
    def disable_endpoints(self, request: HttpRequest, queryset: QuerySet[WebhookEndpoint]) -> None:
        for endpoint in queryset:
            endpoint_disable(endpoint=endpoint)
        self.message_user(request, f"{len(queryset)} endpoint(s) disabled.")


class AttemptInline(admin.TabularInline):
    model = WebhookAttempt
    extra = 0
    can_delete = False
    fields: ClassVar[tuple[str, ...]] = ("number", "started_at", "duration_ms", "status_code", "error", "response_body")
    readonly_fields = fields

    def has_add_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False


class EventTypeFilter(admin.SimpleListFilter):
    title = "event type"
    parameter_name = "event_type"

    def lookups(self, request: HttpRequest, model_admin: admin.ModelAdmin) -> list[tuple[str, str]]:
        return [(value, value) for value in JobEvent.Type.values]

    def queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet:
        return queryset.filter(event__type=self.value()) if self.value() else queryset


@admin.register(WebhookDelivery)
class WebhookDeliveryAdmin(admin.ModelAdmin):
    list_display = [
        "id", "event_type", "endpoint_url", "team", "status", "attempts", "last_status_code", "error_shown",
        "next_attempt_at", "delivered_at", "created_at",
    ]  # fmt: skip
    list_filter = ["status", EventTypeFilter]
    search_fields = ["endpoint__url", "endpoint__team__name", "event__job__id"]
    list_select_related = ["endpoint__team", "event"]
    ordering = ["-created_at", "-id"]
    inlines = [AttemptInline]
    actions = ["send_again"]
    fields: ClassVar[tuple[str, ...]] = (
        "endpoint", "event_shown", "job", "status", "attempts", "next_attempt_at", "last_status_code",
        "last_error", "delivered_at", "dispatched_at", "lease_until", "created_at",
    )  # fmt: skip
    readonly_fields = fields

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # deliveries are made by job events (the outbox), never by hand

    @admin.display(description="event", ordering="event__type")
    def event_type(self, delivery: WebhookDelivery) -> str:
        return delivery.event.type

    @admin.display(description="event")
    def event_shown(self, delivery: WebhookDelivery) -> str:
        return f"{delivery.event.type} ({webhook_id(delivery.event)})"

    @admin.display(description="job")
    def job(self, delivery: WebhookDelivery) -> SafeString:
        url = reverse("admin:generation_generationjob_change", args=[delivery.event.job_id])
        return format_html('<a href="{}">{}</a>', url, delivery.event.job_id)

    @admin.display(description="endpoint", ordering="endpoint__url")
    def endpoint_url(self, delivery: WebhookDelivery) -> str:
        return truncatechars(delivery.endpoint.url, 60)

    @admin.display(description="team", ordering="endpoint__team__name")
    def team(self, delivery: WebhookDelivery) -> str:
        return str(delivery.endpoint.team)

    @admin.display(description="last error")
    def error_shown(self, delivery: WebhookDelivery) -> str:
        return truncatechars(delivery.last_error, ERROR_SHOWN)

    # "Send again" makes the senders POST to a team's receiver again: "change" on deliveries,
    # which a view-only operator lacks. Django re-checks it on every POST of the action.
    @admin.action(description="Send the selected deliveries again", permissions=["change"])
    def send_again(self, request: HttpRequest, queryset: QuerySet[WebhookDelivery]) -> None:
        sent = skipped = gone = 0
        for delivery in queryset.select_related("endpoint"):
            try:
                endpoint_delivery_resend(endpoint=delivery.endpoint, delivery=delivery)
            except EndpointDisabled:
                skipped += 1
            except DeliveryGone:
                gone += 1  # deleted meanwhile, with its endpoint or by retention
            else:
                sent += 1
        self.message_user(request, f"{sent} delivery(ies) sent again.")
        if skipped:
            self.message_user(
                request, f"{skipped} skipped: their endpoint is disabled (enable it first).", messages.WARNING
            )
        if gone:
            self.message_user(request, f"{gone} skipped: deleted meanwhile.", messages.WARNING)
