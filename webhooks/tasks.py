"""Celery tasks of the webhook senders: thin (they take ids and call services). They run on the
`webhooks` queue, in a process of their own (Procfile: webhooks), so a slow receiver never holds
a job's worker slot and a backlog of jobs never delays a delivery."""

from __future__ import annotations

from celery import shared_task


@shared_task(name="webhooks.tasks.deliver_webhook", ignore_result=True)
def deliver_webhook(delivery_id: int) -> str:
    """Send one delivery if it is due and nobody else holds it (the claim decides)."""
    from webhooks.services import delivery_send

    return delivery_send(delivery_id=delivery_id)


@shared_task(name="webhooks.tasks.dispatch_due_webhooks", ignore_result=True)
def dispatch_due_webhooks() -> int:
    """The sweeper (beat): publish the deliveries that are due and have no live task."""
    from webhooks.services import deliveries_dispatch_due

    return deliveries_dispatch_due()
