"""Webhook endpoints of a team, and the deliveries of job events to them (Standard Webhooks).

A delivery is a durable row written in the same transaction as the change it reports (the
outbox, `generation.JobEvent`); senders claim it with a conditional update and record every
attempt, so a worker killed between a job's finish and the delivery only delays it.
"""

from __future__ import annotations

import uuid

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils import timezone

from generation.models import JobEvent

EVENT_TYPES = tuple(JobEvent.Type.values)


class WebhookEndpoint(models.Model):
    class DisabledReason(models.TextChoices):
        NONE = "", "Enabled"
        BY_TEAM = "team", "Disabled by the team"
        FAILING = "failing", "Disabled after failing deliveries"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    team = models.ForeignKey("accounts.Team", on_delete=models.CASCADE, related_name="webhook_endpoints")
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+")
    url = models.URLField(max_length=2000)
    description = models.CharField(max_length=200, blank=True)
    # The event types the endpoint receives (JobEvent.Type values); every type when empty.
    events = models.JSONField(default=list, blank=True)
    # The signing secret, `whsec_` and base64 of 24 random bytes (Standard Webhooks). Kept as it is,
    # since signing needs it (unlike an API key, which is only compared); shown once, at creation.
    secret = models.CharField(max_length=100)
    enabled = models.BooleanField(default=True)
    disabled_reason = models.CharField(max_length=10, choices=DisabledReason.choices, blank=True)
    disabled_at = models.DateTimeField(null=True, blank=True)
    # Since when every attempt has failed (cleared by a success), and how many attempts in a row:
    # an endpoint failing for WEBHOOK_DISABLE_AFTER_SECONDS and WEBHOOK_DISABLE_AFTER_FAILURES
    # attempts is disabled automatically and the team is told on its pages.
    failing_since = models.DateTimeField(null=True, blank=True)
    consecutive_failures = models.PositiveIntegerField(default=0)
    last_success_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["created_at"]
        indexes = [
            # The fan-out in every job event's transaction: a team's enabled endpoints.
            models.Index(fields=["team", "enabled"], name="webhooks_endpoint_team_enabled"),
        ]

    def __str__(self) -> str:
        return self.url

    def receives(self, event_type: str) -> bool:
        return not self.events or event_type in self.events


class WebhookDelivery(models.Model):
    class Status(models.TextChoices):
        PENDING = "pending", "Pending"
        DELIVERED = "delivered", "Delivered"
        FAILED = "failed", "Failed"

    endpoint = models.ForeignKey(WebhookEndpoint, on_delete=models.CASCADE, related_name="deliveries")
    event = models.ForeignKey(JobEvent, on_delete=models.CASCADE, related_name="deliveries")
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.PENDING)
    attempts = models.PositiveSmallIntegerField(default=0)
    # When a pending delivery is due (its first try, or the next after a backoff).
    next_attempt_at = models.DateTimeField(null=True, blank=True, default=timezone.now)
    # A sender that claimed the delivery holds it until then; past it another may take it.
    lease_until = models.DateTimeField(null=True, blank=True)
    # When a task was last published for it (the sweeper re-publishes only after a while).
    dispatched_at = models.DateTimeField(null=True, blank=True)
    last_status_code = models.PositiveSmallIntegerField(null=True, blank=True)
    last_error = models.CharField(max_length=300, blank=True)
    delivered_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        verbose_name_plural = "webhook deliveries"
        ordering = ["-created_at", "-id"]
        constraints = [
            # One delivery of an event to an endpoint; "send again" makes another attempt of it.
            models.UniqueConstraint(fields=["endpoint", "event"], name="webhooks_delivery_once_per_endpoint"),
            models.CheckConstraint(
                condition=Q(status__in=["pending", "delivered", "failed"]), name="webhooks_delivery_status_valid"
            ),
        ]
        indexes = [
            # The sweeper: pending deliveries that are due.
            models.Index(fields=["status", "next_attempt_at"], name="webhooks_delivery_due"),
            # An endpoint's delivery log, newest first.
            models.Index(fields=["endpoint", "-created_at"], name="webhooks_delivery_log"),
        ]

    def __str__(self) -> str:
        return f"{self.event.type} to {self.endpoint_id} ({self.status})"


class WebhookAttempt(models.Model):
    """One HTTP request of a delivery, and what came of it."""

    delivery = models.ForeignKey(WebhookDelivery, on_delete=models.CASCADE, related_name="attempt_log")
    number = models.PositiveSmallIntegerField()
    started_at = models.DateTimeField(default=timezone.now)
    duration_ms = models.PositiveIntegerField(default=0)
    status_code = models.PositiveSmallIntegerField(null=True, blank=True)
    # What went wrong, in words ("timed out after 10 s", "refused: 127.0.0.1 is a private address").
    error = models.CharField(max_length=300, blank=True)
    # The start of the receiver's answer, for the delivery log.
    response_body = models.CharField(max_length=500, blank=True)

    class Meta:
        ordering = ["delivery", "number"]

    def __str__(self) -> str:
        return f"attempt {self.number} of delivery {self.delivery_id}"
