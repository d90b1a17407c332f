"""Sending webhook deliveries (Standard Webhooks), retrying them, and the endpoints' health.

A delivery is a durable row (`WebhookDelivery`, written with its event in the transaction of the
change it reports, webhooks/fanout.py); a task is only a wake-up. Whoever sends it first claims
it with a conditional update (a lease), so a duplicated wake-up, the sweeper and "send again"
never send one attempt twice; a sender killed during an attempt leaves a lease that expires,
after which the sweeper wakes another. Delivery is at least once: a sender killed after the
receiver got the request but before the answer was recorded sends it again, with the same
`webhook-id`, which is what receivers deduplicate on.

What an answer means (`RetryPolicy`): 2xx is delivered; no answer (timeout, connection error),
5xx and 429 are tried again after the next wait of WEBHOOK_RETRY_SCHEDULE (a longer Retry-After
is honoured, up to MAX_RETRY_AFTER_SECONDS) until the schedule is used up; any other answer (3xx,
since redirects are not followed, and other 4xx) and a refused address fail the delivery at once.
Every failed attempt counts against its endpoint, which is disabled automatically once it has
failed for WEBHOOK_DISABLE_AFTER_SECONDS and WEBHOOK_DISABLE_AFTER_FAILURES attempts in a row.
"""

from __future__ import annotations

import binascii
import email.utils
import enum
import logging
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from uuid import UUID

from django.conf import settings
from django.db import transaction
from django.db.models import DateTimeField, F, Max, Q, Value
from django.db.models.functions import Coalesce
from django.utils import timezone
from kombu.exceptions import ChannelError
from standardwebhooks import Webhook
from standardwebhooks.webhooks import EmptyWebhookSecretError

from generation.services.bounded import call_bounded
from webhooks.addresses import MAX_ADDRESSES_TRIED, AddressRefused, Answer, Unreachable, destination_resolve, post
from webhooks.fanout import deliveries_dispatch
from webhooks.models import WebhookAttempt, WebhookDelivery, WebhookEndpoint
from webhooks.payloads import event_payload, payload_body, webhook_id
from webhooks.tasks import deliver_webhook

logger = logging.getLogger(__name__)

USER_AGENT = "Atelier-Webhooks/1.0"
# A Retry-After longer than this is read as this: a receiver cannot park a delivery for a week.
MAX_RETRY_AFTER_SECONDS = 6 * 3600.0
# The most deliveries one sweeper pass publishes, wake-ups already waiting in the queue included.
SWEEP_BATCH = 500
# How much of an answer the delivery log keeps (WebhookAttempt.response_body).
LOGGED_ANSWER_CHARS = 500
_ERROR_CHARS = 300  # WebhookAttempt.error and WebhookDelivery.last_error


class SendOutcome(enum.StrEnum):
    DELIVERED = "delivered"
    RETRY_SCHEDULED = "retrying"
    FAILED = "failed"
    ENDPOINT_DISABLED = "endpoint-disabled"  # not sent: the endpoint was disabled meanwhile
    NOT_CLAIMED = "not-claimed"  # not pending, not due yet, or another sender holds it


class Verdict(enum.Enum):
    DELIVERED = "delivered"
    RETRY = "retry"
    FAILED = "failed"


@dataclass(frozen=True)
class Decision:
    verdict: Verdict
    wait: float = 0.0  # seconds before the next attempt (RETRY)
    gave_up: bool = False  # FAILED because the schedule is used up


@dataclass(frozen=True)
class RetryPolicy:
    """Which failed attempts are tried again, and when."""

    schedule: tuple[float, ...]  # the wait after the 1st, 2nd... failed attempt of a round
    max_retry_after: float

    @classmethod
    def from_settings(cls) -> RetryPolicy:
        return cls(schedule=tuple(settings.WEBHOOK_RETRY_SCHEDULE), max_retry_after=MAX_RETRY_AFTER_SECONDS)

    @staticmethod
    def retryable(status_code: int | None) -> bool:
        """No answer at all (None), a server error or "too many requests" may pass; any other
        answer (a redirect, which is not followed, or another 4xx) says the request will not be
        taken as it is, and trying again changes nothing."""
        return status_code is None or status_code == 429 or 500 <= status_code <= 599

    def decide(
        self, *, attempts: int, status_code: int | None, final: bool = False, retry_after: float | None = None
    ) -> Decision:
        """What follows an attempt: delivered, tried again after a wait, or failed. `attempts`
        counts this one; `final`: it could not succeed as things stand (never retried)."""
        if status_code is not None and 200 <= status_code <= 299:
            return Decision(Verdict.DELIVERED)
        if final or not self.retryable(status_code):
            return Decision(Verdict.FAILED)
        wait = self.next_wait(attempts=attempts, retry_after=retry_after)
        if wait is None:
            return Decision(Verdict.FAILED, gave_up=True)
        return Decision(Verdict.RETRY, wait=wait)

    def next_wait(self, *, attempts: int, retry_after: float | None = None) -> float | None:
        """Seconds until the attempt after `attempts` failed ones; None when the schedule is used up."""
        if attempts < 1 or attempts > len(self.schedule):
            return None
        wait = self.schedule[attempts - 1]
        if retry_after is not None:
            wait = max(wait, min(retry_after, self.max_retry_after))
        return wait


def retry_after_seconds(value: str | None, *, now: datetime) -> float | None:
    """A Retry-After header in seconds: delay-seconds or an HTTP date; None when absent or unreadable.
    (The providers' reader, generation/providers/errors.py, caps at two minutes for a job's
    in-process wait; a webhook's retry waits in the database and may wait hours.)"""
    if not value:
        return None
    value = value.strip()
    # ASCII digits only: str.isdigit also takes "²" or "٣", which float() refuses.
    if value.isascii() and value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - now).total_seconds())


@dataclass(frozen=True)
class _Result:
    """What came of one attempt, before it is recorded."""

    status_code: int | None = None
    error: str = ""
    answer: str = ""
    retry_after: float | None = None
    # The attempt cannot succeed as things stand (a refused address, a disabled endpoint, a job
    # that is gone): the delivery fails at once, whatever the schedule says.
    final: bool = False


def _lease_seconds() -> float:
    # One attempt takes at most a bounded DNS lookup, a connect per address tried and the
    # exchange (twice the timeout, addresses.post); the lease outlasts that with room to record,
    # so no live sender loses its delivery to another.
    return settings.WEBHOOK_TIMEOUT_SECONDS * (1 + MAX_ADDRESSES_TRIED + 2) + 30


def delivery_send(*, delivery_id: int) -> SendOutcome:
    """Make one attempt of a delivery, if it is due and no other sender is making one.

    1. Claim it: a conditional UPDATE (pending, due, no live lease) that sets a lease and counts
       the attempt; act only if it changed the row.
    2. An endpoint disabled since the delivery was made: the delivery fails, not sent.
    3. Build the body (the job as the API shows it now) and sign it: `webhook-id` is the
       event's, `webhook-timestamp` is now.
    4. Resolve and check the URL, then POST to the checked address (no transaction is open).
    5. Record the attempt, the delivery's outcome (only while its lease is still ours) and the
       endpoint's health, in one short transaction.
    """
    if transaction.get_connection().in_atomic_block:
        raise RuntimeError("delivery_send makes an HTTP request: it must not run inside a transaction")
    now = timezone.now()
    lease_until = now + timedelta(seconds=_lease_seconds())
    claimed = (
        WebhookDelivery.objects.filter(id=delivery_id, status=WebhookDelivery.Status.PENDING)
        .filter(Q(next_attempt_at__isnull=True) | Q(next_attempt_at__lte=now))
        .filter(Q(lease_until__isnull=True) | Q(lease_until__lt=now))
        .update(lease_until=lease_until, attempts=F("attempts") + 1)
    )
    if claimed != 1:
        return SendOutcome.NOT_CLAIMED
    delivery = WebhookDelivery.objects.select_related("endpoint", "event", "event__team").filter(id=delivery_id).first()
    if delivery is None:  # its job (and so its event) was deleted since the claim
        return SendOutcome.NOT_CLAIMED
    endpoint = delivery.endpoint
    if not endpoint.enabled:
        reason = WebhookEndpoint.DisabledReason(endpoint.disabled_reason or WebhookEndpoint.DisabledReason.BY_TEAM)
        result = _Result(error=f"Not sent: the endpoint is disabled ({reason.label.lower()}).", final=True)
        return _record(delivery, result, lease_until=lease_until, started=now, duration_ms=0, counts=False)

    started = timezone.now()
    clock = time.monotonic()
    try:
        result = _attempt(delivery)
    except Exception as error:  # noqa: BLE001 - recorded and retried on the schedule like no answer
        # Unrecorded, the claim would only run out and the sweeper wake the delivery again and
        # again, each time counting an attempt that nobody sees, without end.
        logger.exception("webhook delivery %s: the attempt failed unexpectedly", delivery.id)
        result = _Result(error=f"Not sent: the sender failed ({error.__class__.__name__}).")
    duration_ms = int((time.monotonic() - clock) * 1000)
    return _record(delivery, result, lease_until=lease_until, started=started, duration_ms=duration_ms)


def _attempt(delivery: WebhookDelivery) -> _Result:
    """Steps 3 and 4 of `delivery_send`: no database write, no transaction."""
    event = delivery.event
    if event.team_id != delivery.endpoint.team_id:  # the fan-out never does this; never send it if it did
        return _Result(error="Refused: the event belongs to another team.", final=True)
    try:
        payload = event_payload(event)
    except Exception as error:  # noqa: BLE001 - recorded and retried on the schedule, not retried forever
        logger.exception("webhook delivery %s: the payload could not be built", delivery.id)
        return _Result(error=f"Not sent: the payload could not be built ({error.__class__.__name__}).")
    if payload is None:
        return _Result(error="Not sent: the job no longer exists.", final=True)
    body = payload_body(payload)
    message_id = webhook_id(event)
    sent_at = datetime.now(tz=UTC)
    try:
        signature = Webhook(delivery.endpoint.secret).sign(message_id, sent_at, body)
    except (binascii.Error, ValueError, EmptyWebhookSecretError):
        return _Result(error="Not sent: the endpoint's secret is not a valid whsec_ secret.", final=True)
    headers = {
        "webhook-id": message_id,
        "webhook-timestamp": str(int(sent_at.timestamp())),
        "webhook-signature": signature,
        "content-type": "application/json",
        "user-agent": USER_AGENT,
    }
    try:
        destination = destination_resolve(delivery.endpoint.url)
        answer = post(destination, body=body, headers=headers)
    except AddressRefused as refusal:
        return _Result(error=str(refusal), final=True)
    except Unreachable as error:
        return _Result(error=f"No answer: {error}.")
    return _answer_result(answer)


def _answer_result(answer: Answer) -> _Result:
    text = answer.body.decode("utf-8", errors="replace")[:LOGGED_ANSWER_CHARS]
    status = answer.status
    if 200 <= status <= 299:
        return _Result(status_code=status, answer=text)
    if 300 <= status <= 399:
        error = f"The receiver answered {status} (a redirect); redirects are not followed."
    elif RetryPolicy.retryable(status):
        error = f"The receiver answered {status}."
    else:
        error = f"The receiver answered {status}; only timeouts, connection errors, 5xx and 429 are retried."
    retry_after = retry_after_seconds(answer.headers.get("retry-after"), now=datetime.now(tz=UTC))
    return _Result(status_code=status, error=error, answer=text, retry_after=retry_after)


def _record(
    delivery: WebhookDelivery,
    result: _Result,
    *,
    lease_until: datetime,
    started: datetime,
    duration_ms: int,
    counts: bool = True,
) -> SendOutcome:
    """Step 5 of `delivery_send`. `counts`: whether the attempt reached for the endpoint (a
    disabled endpoint's "not sent" says nothing of its health)."""
    now = timezone.now()
    # delivery.attempts was read after the claim: it counts this attempt.
    decision = RetryPolicy.from_settings().decide(
        attempts=delivery.attempts, status_code=result.status_code, final=result.final, retry_after=result.retry_after
    )
    if decision.verdict is Verdict.DELIVERED:
        outcome = SendOutcome.DELIVERED
        fields: dict[str, object] = {"status": WebhookDelivery.Status.DELIVERED, "delivered_at": now, "last_error": ""}
    elif decision.verdict is Verdict.RETRY:
        outcome = SendOutcome.RETRY_SCHEDULED
        # dispatched_at is cleared so that the sweeper publishes the retry as soon as it is due.
        fields = {
            "next_attempt_at": now + timedelta(seconds=decision.wait),
            "dispatched_at": None,
            "last_error": result.error[:_ERROR_CHARS],
        }
    else:
        outcome = SendOutcome.FAILED if counts else SendOutcome.ENDPOINT_DISABLED
        error = f"{result.error} Gave up after {delivery.attempts} attempts." if decision.gave_up else result.error
        fields = {"status": WebhookDelivery.Status.FAILED, "last_error": error[:_ERROR_CHARS]}
    with transaction.atomic():
        # Locked first: the endpoint (and so the delivery) deleted during the attempt is seen
        # here, and one deleted from now on waits for this commit, instead of the attempt's row
        # pointing at a delivery that is gone (an IntegrityError at the commit).
        if not WebhookDelivery.objects.select_for_update().filter(id=delivery.id).exists():
            logger.info("webhook delivery %s: deleted during attempt %s", delivery.id, delivery.attempts)
            return outcome
        number = (WebhookAttempt.objects.filter(delivery=delivery).aggregate(last=Max("number"))["last"] or 0) + 1
        WebhookAttempt.objects.create(
            delivery=delivery,
            number=number,
            started_at=started,
            duration_ms=duration_ms,
            status_code=result.status_code,
            error=result.error[:_ERROR_CHARS],
            response_body=result.answer[:LOGGED_ANSWER_CHARS],
        )
        still_ours = WebhookDelivery.objects.filter(
            id=delivery.id, status=WebhookDelivery.Status.PENDING, lease_until=lease_until
        ).update(**fields, last_status_code=result.status_code, lease_until=None)
        if not still_ours:
            # The lease ran out during the attempt and another sender took the delivery over:
            # the attempt is in the log, its outcome is the other sender's to record.
            logger.warning("webhook delivery %s: lease lost during attempt %s", delivery.id, number)
        if counts:
            _endpoint_health(delivery.endpoint_id, delivered=decision.verdict is Verdict.DELIVERED, now=now)
    return outcome


def _endpoint_health(endpoint_id: UUID, *, delivered: bool, now: datetime) -> None:
    """A success clears the endpoint's failure streak; a failure extends it, and disables the
    endpoint once the streak is both WEBHOOK_DISABLE_AFTER_SECONDS long and
    WEBHOOK_DISABLE_AFTER_FAILURES attempts deep (either alone is a bad hour or a burst)."""
    endpoints = WebhookEndpoint.objects.filter(id=endpoint_id)
    if delivered:
        endpoints.update(failing_since=None, consecutive_failures=0, last_success_at=now)
        return
    endpoints.update(
        consecutive_failures=F("consecutive_failures") + 1,
        failing_since=Coalesce(F("failing_since"), Value(now, output_field=DateTimeField())),
    )
    disabled = endpoints.filter(
        enabled=True,
        consecutive_failures__gte=settings.WEBHOOK_DISABLE_AFTER_FAILURES,
        failing_since__lte=now - timedelta(seconds=settings.WEBHOOK_DISABLE_AFTER_SECONDS),
    ).update(enabled=False, disabled_reason=WebhookEndpoint.DisabledReason.FAILING, disabled_at=now)
    if disabled:
        logger.warning("webhook endpoint %s disabled after failing deliveries", endpoint_id)


def delivery_resend(*, delivery_id: int) -> WebhookDelivery | None:
    """ "Send again": the delivery becomes pending, due now, with a new round of attempts (the
    whole retry schedule), and is published after the commit. It is the same event, so the
    same `webhook-id`; the attempt log keeps counting. A delivery a sender is attempting right
    now is left to that attempt. An endpoint that is disabled records "not sent" again. None
    when the delivery is gone (its endpoint deleted, or retention removed it, since it was read)."""
    now = timezone.now()
    reopened = (
        WebhookDelivery.objects.filter(id=delivery_id)
        .filter(~Q(status=WebhookDelivery.Status.PENDING) | Q(lease_until__isnull=True) | Q(lease_until__lt=now))
        .update(status=WebhookDelivery.Status.PENDING, next_attempt_at=now, attempts=0, lease_until=None)
    )
    if reopened:
        transaction.on_commit(lambda: deliveries_dispatch([delivery_id]))
    return WebhookDelivery.objects.filter(id=delivery_id).first()


def deliveries_dispatch_due() -> int:
    """The sweeper (beat, every WEBHOOK_SWEEP_INTERVAL_SECONDS): publish the deliveries that are
    due and have no live task. Returns how many it published.

    1. Count the wake-ups already waiting in the `webhooks` queue: a pass publishes at most
       SWEEP_BATCH minus those, so however long the senders are away (their process down, the
       queue backed up) the broker holds a bounded number of messages.
    2. Due deliveries: pending, their time come, no live lease, and either not published since
       they became due (dispatched_at cleared by a scheduled retry, or a publish after the
       commit that failed) or published over WEBHOOK_REDISPATCH_AFTER_SECONDS ago (the message
       was lost: a broker restart, a sender killed while it held it). Earliest due first.
    3. Publish them (`deliveries_dispatch`, which notes dispatched_at).
    """
    waiting = _waiting_wakeups()
    if waiting is None:
        return 0  # the broker does not answer: a publish would not either
    room = SWEEP_BATCH - waiting
    if room <= 0:
        return 0
    now = timezone.now()
    published_before = now - timedelta(seconds=settings.WEBHOOK_REDISPATCH_AFTER_SECONDS)
    due = list(
        WebhookDelivery.objects.filter(status=WebhookDelivery.Status.PENDING)
        .filter(Q(next_attempt_at__isnull=True) | Q(next_attempt_at__lte=now))
        .filter(Q(lease_until__isnull=True) | Q(lease_until__lt=now))
        .filter(Q(dispatched_at__isnull=True) | Q(dispatched_at__lt=published_before))
        .order_by(F("next_attempt_at").asc(nulls_first=True), "id")
        .values_list("id", flat=True)[:room]
    )
    return deliveries_dispatch(due) if due else 0


def _waiting_wakeups() -> int | None:
    """Messages waiting in the `webhooks` queue, or None when the broker does not answer in time."""
    queue = settings.CELERY_TASK_ROUTES[deliver_webhook.name]["queue"]

    def read() -> int:
        with deliver_webhook.app.connection_for_read() as connection:
            try:
                return int(connection.default_channel.queue_declare(queue=queue, passive=True).message_count)
            except ChannelError as error:
                if "NOT_FOUND" in str(error):
                    return 0  # no sender has declared the queue yet: nothing waits in it
                raise

    try:
        return call_bounded(read, timeout=settings.PUBLISH_TIMEOUT_SECONDS, what="queue length")
    except Exception as error:  # noqa: BLE001 - unknown is an answer: skip this pass
        logger.warning("Could not read the length of the webhooks queue: %s", error)
        return None
