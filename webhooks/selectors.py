"""Reads of a team's webhook endpoints and their delivery logs (the API, the settings page and
the notice every page shows share them). Another team's rows are None, like rows that do not
exist."""

from __future__ import annotations

from dataclasses import dataclass
from uuid import UUID

from django.db.models import Prefetch, QuerySet

from accounts.models import Team
from webhooks.models import WebhookAttempt, WebhookDelivery, WebhookEndpoint

# Row ids are 64-bit; a larger number in a URL is simply no delivery, not a database error.
_MAX_ROW_ID = 2**63 - 1
# The most automatically disabled endpoints the notice reads (a team has QUOTA_WEBHOOK_ENDPOINTS).
NOTICE_READ = 50


def endpoint_list_for_team(*, team: Team) -> QuerySet[WebhookEndpoint]:
    """The team's endpoints, oldest first (the order they were added in, which stays put)."""
    return WebhookEndpoint.objects.filter(team=team).order_by("created_at", "id")


def endpoint_for_team(*, team: Team, endpoint_id: UUID) -> WebhookEndpoint | None:
    return WebhookEndpoint.objects.filter(team=team, id=endpoint_id).first()


def delivery_log_for_endpoint(*, endpoint: WebhookEndpoint) -> QuerySet[WebhookDelivery]:
    """The endpoint's deliveries, newest first, each with its event and its attempts (in order):
    three queries for a page of them, whatever its length."""
    return (
        WebhookDelivery.objects.filter(endpoint=endpoint)
        .select_related("event")
        .prefetch_related(Prefetch("attempt_log", queryset=WebhookAttempt.objects.order_by("number")))
        .order_by("-created_at", "-id")
    )


def delivery_for_endpoint(*, endpoint: WebhookEndpoint, delivery_id: int) -> WebhookDelivery | None:
    if not 0 < delivery_id <= _MAX_ROW_ID:
        return None
    return delivery_log_for_endpoint(endpoint=endpoint).filter(id=delivery_id).first()


@dataclass(frozen=True)
class DisabledNotice:
    """The team's endpoints that were disabled automatically: how many, and the latest one."""

    count: int  # at most NOTICE_READ
    latest: WebhookEndpoint


def endpoints_disabled_notice(*, team: Team) -> DisabledNotice | None:
    """What the notice on every page says, in one query on the (team, enabled) index; None when
    no endpoint of the team was disabled automatically. A read: nothing is marked seen, the
    notice stays until the team enables or deletes the endpoint."""
    disabled = list(
        WebhookEndpoint.objects.filter(team=team, enabled=False, disabled_reason=WebhookEndpoint.DisabledReason.FAILING)
        .only("id", "url", "description", "disabled_at")
        .order_by("-disabled_at", "-created_at")[:NOTICE_READ]
    )
    return DisabledNotice(count=len(disabled), latest=disabled[0]) if disabled else None
