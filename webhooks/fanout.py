"""The webhook side of the outbox: a job event's deliveries, written in the event's transaction,
and the wake-up of the senders after its commit."""

from __future__ import annotations

import logging

from django.conf import settings
from django.utils import timezone

from generation.models import JobEvent
from generation.services.bounded import StepTimeout, call_bounded
from webhooks.models import WebhookDelivery, WebhookEndpoint

logger = logging.getLogger(__name__)


def deliveries_create(*, event: JobEvent) -> list[int]:
    """One pending delivery per enabled endpoint of the event's team that wants its type."""
    endpoints = [
        endpoint
        for endpoint in WebhookEndpoint.objects.filter(team_id=event.team_id, enabled=True).only("id", "events")
        if endpoint.receives(event.type)
    ]
    if not endpoints:
        return []
    now = timezone.now()
    deliveries = WebhookDelivery.objects.bulk_create(
        [WebhookDelivery(endpoint=endpoint, event=event, next_attempt_at=now, created_at=now) for endpoint in endpoints]
    )
    return [delivery.id for delivery in deliveries]


def deliveries_dispatch(delivery_ids: list[int]) -> int:
    """Publish a send task per delivery, each bounded by PUBLISH_TIMEOUT_SECONDS; a publish that
    fails is left to the sweeper (`dispatch_due_webhooks`). Returns how many were published."""
    from webhooks.tasks import deliver_webhook

    if not delivery_ids:
        return 0
    # Noted before publishing, not after: a sender may take the message at once and schedule a
    # retry (which clears dispatched_at for the sweeper); a note written after it would hide
    # that retry from the sweeper. Those that could not be published are un-noted below.
    WebhookDelivery.objects.filter(id__in=delivery_ids).update(dispatched_at=timezone.now())
    published = 0
    for delivery_id in delivery_ids:
        try:
            call_bounded(
                lambda delivery_id=delivery_id: deliver_webhook.apply_async(args=[delivery_id], retry=False),  # type: ignore[misc]
                timeout=settings.PUBLISH_TIMEOUT_SECONDS,
                what="publish",
            )
        except StepTimeout:
            logger.warning("could not publish webhook delivery %s in time; the sweeper will", delivery_id)
            break
        except Exception as error:  # noqa: BLE001 - any publish failure is the sweeper's to recover
            logger.warning("could not publish webhook delivery %s (%s); the sweeper will", delivery_id, error)
            break
        published += 1
    if published < len(delivery_ids):
        WebhookDelivery.objects.filter(id__in=delivery_ids[published:]).update(dispatched_at=None)
    return published
