"""A team's webhook endpoints: made (the secret shown once), changed, switched on and off, deleted,
and "send again" of a delivery. The API and the settings page both call these.

The sending side (deliveries, attempts, the endpoint's health and its automatic disabling) is
webhooks/services.py; a URL's check is webhooks/addresses.py (`url_refusal`).
"""

from __future__ import annotations

import base64
import secrets
from collections.abc import Iterable
from typing import Final

from django.db import transaction
from django.utils import timezone

from accounts.models import Team, User
from accounts.quotas import Quota, quota_check
from config.errors import ServiceError, ValidationFailed
from webhooks.addresses import url_refusal
from webhooks.models import EVENT_TYPES, WebhookDelivery, WebhookEndpoint
from webhooks.services import delivery_resend

SECRET_PREFIX = "whsec_"
SECRET_BYTES = 24  # Standard Webhooks: between 24 and 64 bytes
URL_MAX = WebhookEndpoint._meta.get_field("url").max_length or 2000
DESCRIPTION_MAX = WebhookEndpoint._meta.get_field("description").max_length or 200


class _Unchanged:
    """What `endpoint_update` is given for a field it must leave as it is (None is a value)."""

    def __repr__(self) -> str:
        return "UNCHANGED"


UNCHANGED: Final = _Unchanged()


class EndpointDisabled(ServiceError):
    """ "Send again" to an endpoint that is disabled: it would only record "not sent"."""

    status_code = 409
    code = "ENDPOINT_DISABLED"


class DeliveryGone(ServiceError):
    """ "Send again" of a delivery deleted since it was read (with its endpoint, or by retention)."""

    status_code = 404
    code = "NOT_FOUND"


def endpoint_secret_new() -> str:
    """A signing secret in the Standard Webhooks form: `whsec_` and base64 of random bytes."""
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(SECRET_BYTES)).decode("ascii")


def _url_checked(url: str) -> str:
    """The URL without surrounding spaces, or ValidationFailed naming `url` with the reason.
    May look the host up (bounded by WEBHOOK_TIMEOUT_SECONDS): call it outside a transaction."""
    url = url.strip()
    if not url:
        raise ValidationFailed({"url": ["This field may not be blank."]})
    if len(url) > URL_MAX:
        raise ValidationFailed({"url": [f"At most {URL_MAX} characters."]})
    refusal = url_refusal(url)
    if refusal is not None:
        raise ValidationFailed({"url": [refusal]})
    return url


def _events_checked(events: Iterable[str] | None) -> list[str]:
    """The event types, each once, in the order of JobEvent.Type; empty (every type) for None.
    An unknown name is a ValidationFailed naming `events`."""
    wanted = set(events or [])
    unknown = sorted(wanted - set(EVENT_TYPES))
    if unknown:
        raise ValidationFailed(
            {"events": [f"Unknown event type: {', '.join(unknown)}. Known: {', '.join(EVENT_TYPES)}."]}
        )
    return [event_type for event_type in EVENT_TYPES if event_type in wanted]


def _description_checked(description: str) -> str:
    description = description.strip()
    if len(description) > DESCRIPTION_MAX:
        raise ValidationFailed({"description": [f"At most {DESCRIPTION_MAX} characters."]})
    return description


def endpoint_create(
    *, team: Team, user: User | None, url: str, events: Iterable[str] | None = None, description: str = ""
) -> tuple[WebhookEndpoint, str]:
    """Add an endpoint to `team`; returns it and its secret, which is shown this once.

    1. Check the fields; the URL's check may resolve its host, so it runs before any transaction.
    2. Lock the team row, so two creations at once cannot both pass the limit, and refuse an
       endpoint over the team's Quota.WEBHOOK_ENDPOINTS: QuotaExceeded.
    3. Store it with a new secret. Only events that happen from now on are delivered to it.
    """
    url = _url_checked(url)
    event_types = _events_checked(events)
    description = _description_checked(description)
    with transaction.atomic():
        # no_key: a plain FOR UPDATE would also block inserts of rows pointing at the team (jobs).
        Team.objects.select_for_update(no_key=True).filter(id=team.id).first()
        quota_check(team, Quota.WEBHOOK_ENDPOINTS, used=WebhookEndpoint.objects.filter(team=team).count())
        secret = endpoint_secret_new()
        endpoint = WebhookEndpoint.objects.create(
            team=team, created_by=user, url=url, events=event_types, description=description, secret=secret
        )
    return endpoint, secret


def endpoint_update(
    *,
    endpoint: WebhookEndpoint,
    url: str | _Unchanged = UNCHANGED,
    events: Iterable[str] | None | _Unchanged = UNCHANGED,
    description: str | _Unchanged = UNCHANGED,
    enabled: bool | _Unchanged = UNCHANGED,
) -> WebhookEndpoint:
    """Change what is given and leave the rest. A new URL of an enabled endpoint starts a new
    failure streak (the old one was another receiver's); a disabled endpoint keeps its record
    until it is enabled, which clears it. `enabled` goes through endpoint_enable / endpoint_disable."""
    changes: dict[str, object] = {}
    if not isinstance(url, _Unchanged):
        url = _url_checked(url)
        if url != endpoint.url:
            changes["url"] = url
            if endpoint.enabled:
                changes.update(failing_since=None, consecutive_failures=0)
    if not isinstance(events, _Unchanged):
        changes["events"] = _events_checked(events)
    if not isinstance(description, _Unchanged):
        changes["description"] = _description_checked(description)
    if changes:
        WebhookEndpoint.objects.filter(id=endpoint.id).update(**changes)
    if not isinstance(enabled, _Unchanged):
        (endpoint_enable if enabled else endpoint_disable)(endpoint=endpoint)
    endpoint.refresh_from_db()
    return endpoint


def endpoint_enable(*, endpoint: WebhookEndpoint) -> WebhookEndpoint:
    """Switch deliveries on again. An endpoint disabled after failing starts afresh: its failure
    streak is cleared, so the next failure does not disable it at once. Deliveries that failed
    meanwhile are not resent by themselves ("send again" does, one by one)."""
    WebhookEndpoint.objects.filter(id=endpoint.id, enabled=False).update(
        enabled=True, disabled_reason=WebhookEndpoint.DisabledReason.NONE, disabled_at=None,
        failing_since=None, consecutive_failures=0,
    )  # fmt: skip
    endpoint.refresh_from_db()
    return endpoint


def endpoint_disable(*, endpoint: WebhookEndpoint) -> WebhookEndpoint:
    """Stop deliveries: no new ones are made for it, and pending ones are recorded as not sent.
    An endpoint already disabled keeps its reason (disabled after failing stays explained)."""
    WebhookEndpoint.objects.filter(id=endpoint.id, enabled=True).update(
        enabled=False, disabled_reason=WebhookEndpoint.DisabledReason.BY_TEAM, disabled_at=timezone.now()
    )
    endpoint.refresh_from_db()
    return endpoint


def endpoint_delete(*, endpoint: WebhookEndpoint) -> None:
    """Delete the endpoint with its delivery log; nothing more is sent to it."""
    WebhookEndpoint.objects.filter(id=endpoint.id).delete()


def endpoint_delivery_resend(*, endpoint: WebhookEndpoint, delivery: WebhookDelivery) -> WebhookDelivery:
    """ "Send again" a delivery of the endpoint (the caller found both in the team). Refused with
    EndpointDisabled while the endpoint is disabled: the attempt would only record "not sent";
    DeliveryGone when the endpoint or the delivery was deleted since the caller read them."""
    if delivery.endpoint_id != endpoint.id:
        raise ValueError("the delivery belongs to another endpoint")
    enabled = WebhookEndpoint.objects.filter(id=endpoint.id).values_list("enabled", flat=True).first()
    if enabled is None:
        raise DeliveryGone("The webhook endpoint was deleted.")
    if not enabled:
        raise EndpointDisabled("The endpoint is disabled: enable it first, then send the delivery again.")
    resent = delivery_resend(delivery_id=delivery.id)
    if resent is None:
        raise DeliveryGone("The delivery no longer exists: old deliveries leave the log after a while.")
    return resent
