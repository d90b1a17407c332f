"""The webhooks settings page (/settings/webhooks/): the team's endpoints and their states, a form
to add one (its secret shown once), and per endpoint its settings, enable/disable, delete and the
delivery log with "Send again". The writes are webhooks/endpoints.py's, as for the API, and so
is the rate limit on adding, changing and sending again (RATE_LIMIT_WEBHOOK): a refused one says
so and changes nothing."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from uuid import UUID

from django import forms
from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_POST

from config.errors import ServiceError, ValidationFailed
from config.throttles import RateScope, rate_limit_wait
from generation.models import JobEvent
from generation.pages.context import page_team, page_user
from generation.pages.limits import too_many_message, too_many_response
from webhooks.endpoints import (
    DESCRIPTION_MAX,
    URL_MAX,
    endpoint_create,
    endpoint_delete,
    endpoint_delivery_resend,
    endpoint_disable,
    endpoint_enable,
    endpoint_update,
)
from webhooks.models import WebhookDelivery, WebhookEndpoint
from webhooks.payloads import webhook_id
from webhooks.selectors import (
    delivery_for_endpoint,
    delivery_log_for_endpoint,
    endpoint_for_team,
    endpoint_list_for_team,
)

DELIVERIES_PER_PAGE = 25
# The forms that already made an endpoint, by their token, in the person's session: the answer
# that shows a new secret is the POST's own (the page never shows it again), and reloading it
# sends the form again, which must not make a second endpoint. (The API keys page does the same.)
SESSION_SENT_FORMS = "webhook_forms_sent"
SENT_FORMS_KEPT = 20


class EndpointForm(forms.Form):
    url = forms.CharField(
        label="URL",
        max_length=URL_MAX,
        widget=forms.URLInput(attrs={"placeholder": "https://example.com/atelier-webhooks", "spellcheck": "false"}),
        help_text="Where Atelier POSTs each event; its host must have a public address.",
    )
    description = forms.CharField(
        label="Description (optional)",
        max_length=DESCRIPTION_MAX,
        required=False,
        help_text="What receives it: “order system”, “Slack bridge”.",
    )
    events = forms.MultipleChoiceField(
        choices=JobEvent.Type.choices,
        widget=forms.CheckboxSelectMultiple,
        required=False,
        help_text="None ticked: every event.",
    )
    # Only tells a resent form apart; a client that sends none simply makes an endpoint.
    form_token = forms.CharField(required=False, widget=forms.HiddenInput)

    @classmethod
    def blank(cls) -> EndpointForm:
        return cls(initial={"form_token": uuid.uuid4().hex})

    @classmethod
    def of(cls, endpoint: WebhookEndpoint) -> EndpointForm:
        return cls(initial={"url": endpoint.url, "description": endpoint.description, "events": endpoint.events})

    def add_service_error(self, error: ServiceError) -> None:
        """A service's refusal shown on the field it names (the URL's reason, say), else above."""
        if isinstance(error, ValidationFailed):
            for field, field_messages in error.details.items():
                self.add_error(field if field in self.fields else None, field_messages)
        else:
            self.add_error(None, error.message)


@dataclass(frozen=True)
class EndpointRow:
    """An endpoint as the page shows it: its state in words."""

    endpoint: WebhookEndpoint

    @property
    def state(self) -> str:
        """`enabled`, `failing` (enabled, its recent attempts failed), `disabled` or `disabled-failing`."""
        endpoint = self.endpoint
        if endpoint.enabled:
            return "failing" if endpoint.failing_since else "enabled"
        return "disabled-failing" if endpoint.disabled_reason == WebhookEndpoint.DisabledReason.FAILING else "disabled"

    @property
    def state_label(self) -> str:
        return {
            "enabled": "Enabled",
            "failing": "Enabled, failing",
            "disabled": "Disabled",
            "disabled-failing": "Disabled automatically",
        }[self.state]

    @property
    def event_labels(self) -> str:
        if not self.endpoint.events:
            return "Every event"
        return ", ".join(self.endpoint.events)

    @property
    def disabled_after(self) -> str:
        """How long an endpoint fails before it is disabled, in words ("a day", "2 hours")."""
        return duration_words(settings.WEBHOOK_DISABLE_AFTER_SECONDS)

    @property
    def failures_to_disable(self) -> int:
        return int(settings.WEBHOOK_DISABLE_AFTER_FAILURES)


@dataclass(frozen=True)
class DeliveryRow:
    delivery: WebhookDelivery

    @property
    def event_id(self) -> str:
        return webhook_id(self.delivery.event)

    @property
    def next_attempt_at(self) -> datetime | None:
        pending = self.delivery.status == WebhookDelivery.Status.PENDING
        return self.delivery.next_attempt_at if pending else None


def duration_words(seconds: float) -> str:
    if seconds >= 86_400 and seconds % 86_400 == 0:
        days = int(seconds // 86_400)
        return "a day" if days == 1 else f"{days} days"
    if seconds >= 3600:
        hours = round(seconds / 3600, 1)
        return "an hour" if hours == 1 else f"{hours:g} hours"
    if seconds >= 60:
        minutes = round(seconds / 60)
        return "a minute" if minutes == 1 else f"{minutes} minutes"
    return f"{seconds:g} seconds"


def _limit_wait(request: HttpRequest, what: str) -> int | None:
    """The API's webhook limit (a URL resolved, or POSTed to), shared with it: None when within
    it, else the seconds to wait, with the message for the page already queued."""
    wait = rate_limit_wait(request, RateScope.WEBHOOK)
    if wait is not None:
        messages.error(request, too_many_message(wait, what))
    return wait


def _endpoint_or_404(request: HttpRequest, endpoint_id: UUID) -> WebhookEndpoint:
    endpoint = endpoint_for_team(team=page_team(request), endpoint_id=endpoint_id)
    if endpoint is None:
        raise Http404("No such webhook endpoint in this team.")  # another team's is not confirmed
    return endpoint


@never_cache  # the answer to a creation holds the secret itself: no cache may keep it
@login_required
def webhooks_page(request: HttpRequest) -> HttpResponse:
    """GET lists the endpoints; POST adds one and shows its secret in this answer only (a redirect
    could not show it: the page never shows a secret again)."""
    user, team = page_user(request), page_team(request)
    form = EndpointForm(request.POST) if request.method == "POST" else EndpointForm.blank()
    created: tuple[WebhookEndpoint, str] | None = None
    resent = False
    status = 200
    wait = _limit_wait(request, "endpoint changes") if request.method == "POST" else None
    if wait is None and request.method == "POST":
        sent: list[str] = request.session.get(SESSION_SENT_FORMS, [])
        token = (form.data.get("form_token") or "")[:64]
        if not form.is_valid():
            status = 400
        elif token and token in sent:
            resent, form = True, EndpointForm.blank()
        else:
            try:
                created = endpoint_create(
                    team=team,
                    user=user,
                    url=form.cleaned_data["url"],
                    events=form.cleaned_data["events"],
                    description=form.cleaned_data["description"],
                )
            except ServiceError as error:
                form.add_service_error(error)
                status = error.status_code
            else:
                if token:
                    request.session[SESSION_SENT_FORMS] = [*sent, token][-SENT_FORMS_KEPT:]
                form = EndpointForm.blank()
    rows = [EndpointRow(endpoint) for endpoint in endpoint_list_for_team(team=team)]
    context = {"form": form, "created": created, "resent": resent, "rows": rows}
    response = render(request, "webhooks/webhooks.html", context, status=status)
    # Refused: the form comes back as it was sent, to send again later.
    return response if wait is None else too_many_response(response, wait)


@login_required
def endpoint_page(request: HttpRequest, endpoint_id: UUID) -> HttpResponse:
    """One endpoint: its state, its settings (POST changes them) and its delivery log."""
    endpoint = _endpoint_or_404(request, endpoint_id)
    form = EndpointForm(request.POST) if request.method == "POST" else EndpointForm.of(endpoint)
    status = 200
    wait = _limit_wait(request, "endpoint changes") if request.method == "POST" else None
    if wait is None and request.method == "POST":
        if not form.is_valid():
            status = 400
        else:
            try:
                endpoint_update(
                    endpoint=endpoint,
                    url=form.cleaned_data["url"],
                    events=form.cleaned_data["events"],
                    description=form.cleaned_data["description"],
                )
            except ServiceError as error:
                form.add_service_error(error)
                status = error.status_code
            else:
                messages.success(request, "The endpoint's settings are saved.")
                return redirect("webhook-page", endpoint_id=endpoint.id)
    page = Paginator(delivery_log_for_endpoint(endpoint=endpoint), DELIVERIES_PER_PAGE).get_page(
        request.GET.get("page")
    )
    context = {
        "row": EndpointRow(endpoint),
        "form": form,
        "page": page,
        "deliveries": [DeliveryRow(delivery) for delivery in page],
    }
    response = render(request, "webhooks/endpoint.html", context, status=status)
    return response if wait is None else too_many_response(response, wait)


@login_required
@require_POST
def endpoint_enable_view(request: HttpRequest, endpoint_id: UUID) -> HttpResponse:
    endpoint = endpoint_enable(endpoint=_endpoint_or_404(request, endpoint_id))
    messages.success(request, f"{endpoint.url} is enabled: new events are sent to it.")
    return _back(request, endpoint)


@login_required
@require_POST
def endpoint_disable_view(request: HttpRequest, endpoint_id: UUID) -> HttpResponse:
    endpoint = endpoint_disable(endpoint=_endpoint_or_404(request, endpoint_id))
    messages.success(request, f"{endpoint.url} is disabled: nothing is sent to it until you enable it.")
    return _back(request, endpoint)


@login_required
@require_POST
def endpoint_delete_view(request: HttpRequest, endpoint_id: UUID) -> HttpResponse:
    endpoint = _endpoint_or_404(request, endpoint_id)
    endpoint_delete(endpoint=endpoint)
    messages.success(request, f"{endpoint.url} is deleted with its delivery log.")
    return redirect("webhooks")


@login_required
@require_POST
def delivery_resend_view(request: HttpRequest, endpoint_id: UUID, delivery_id: int) -> HttpResponse:
    endpoint = _endpoint_or_404(request, endpoint_id)
    delivery = delivery_for_endpoint(endpoint=endpoint, delivery_id=delivery_id)
    if delivery is None:
        raise Http404("No such delivery of this webhook endpoint.")
    if _limit_wait(request, "deliveries sent again") is not None:
        # To the endpoint's page, which shows the message: a reload there sends nothing again.
        return redirect("webhook-page", endpoint_id=endpoint.id)
    try:
        endpoint_delivery_resend(endpoint=endpoint, delivery=delivery)
    except ServiceError as error:
        messages.error(request, error.message)
    else:
        messages.success(
            request, f"The {delivery.event.type} event ({webhook_id(delivery.event)}) is being sent again."
        )
    return redirect("webhook-page", endpoint_id=endpoint.id)


def _back(request: HttpRequest, endpoint: WebhookEndpoint) -> HttpResponse:
    """Back to the page the button was on: the list, or the endpoint's own page."""
    if request.POST.get("back") == "endpoint":
        return redirect("webhook-page", endpoint_id=endpoint.id)
    return redirect("webhooks")
