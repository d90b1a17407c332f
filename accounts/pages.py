"""The API keys page (/account/keys/): the team's keys, a form to make one, revoke buttons."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta

from django import forms
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.core.paginator import Paginator
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils import timezone
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_POST

from accounts.models import Team, User
from accounts.selectors import api_key_for_team, api_key_list_for_team, membership_role
from accounts.services import API_KEY_NAME_MAX, ApiKeyPermissionDenied, IssuedApiKey, api_key_create, api_key_revoke
from accounts.teams import current_team
from config.errors import ServiceError

KEYS_PER_PAGE = 50
NEVER = "never"
# The forms that already made a key, by their token, in the person's session: the page that
# shows a new key answers a POST (the key is never stored, so a redirect could not show it), and
# reloading it sends the form again, which must not make a second key.
SESSION_SENT_FORMS = "api_key_forms_sent"
SENT_FORMS_KEPT = 20


class ApiKeyForm(forms.Form):
    name = forms.CharField(max_length=API_KEY_NAME_MAX, help_text="What uses it: “nightly export”, “Zapier”.")
    expires_in = forms.ChoiceField(
        label="Expires",
        choices=[("30", "in 30 days"), ("90", "in 90 days"), ("365", "in a year"), (NEVER, "never")],
        initial="90",
    )
    # Only tells a resent form apart; a client that sends none (a script) simply makes a key.
    form_token = forms.CharField(required=False, widget=forms.HiddenInput)

    @classmethod
    def blank(cls) -> ApiKeyForm:
        return cls(initial={"form_token": uuid.uuid4().hex})

    def expires_at(self, now: datetime) -> datetime | None:
        days = self.cleaned_data["expires_in"]
        return None if days == NEVER else now + timedelta(days=int(days))


def _person_and_team(request: HttpRequest) -> tuple[User, Team]:
    assert isinstance(request.user, User), "behind login_required"
    team = current_team(request)
    if team is None:
        raise Http404("You are not a member of any team.")
    return request.user, team


@never_cache  # the answer to a creation holds the key itself: no cache may keep it
@login_required
def keys_page(request: HttpRequest) -> HttpResponse:
    """GET lists the keys; POST makes one and shows it in this answer only (never stored, so a
    redirect could not show it again)."""
    user, team = _person_and_team(request)
    form = ApiKeyForm(request.POST) if request.method == "POST" else ApiKeyForm.blank()
    issued: IssuedApiKey | None = None
    resent = False
    status = 200
    if request.method == "POST":
        sent: list[str] = request.session.get(SESSION_SENT_FORMS, [])
        if not form.is_valid():
            status = 400
        elif form.cleaned_data["form_token"] and form.cleaned_data["form_token"][:64] in sent:
            resent, form = True, ApiKeyForm.blank()
        else:
            try:
                issued = api_key_create(
                    team=team,
                    created_by=user,
                    name=form.cleaned_data["name"],
                    expires_at=form.expires_at(timezone.now()),
                )
            except ServiceError as error:  # over the team's limit (the form already needs a name)
                form.add_error(None, error.message)
                status = error.status_code
            else:
                if form.cleaned_data["form_token"]:
                    token = form.cleaned_data["form_token"][:64]
                    request.session[SESSION_SENT_FORMS] = [*sent, token][-SENT_FORMS_KEPT:]
                form = ApiKeyForm.blank()
    now = timezone.now()
    page = Paginator(api_key_list_for_team(team=team), KEYS_PER_PAGE).get_page(request.GET.get("page"))
    role = membership_role(team=team, user=user)
    rows = []
    for api_key in page:
        state = api_key.state_at(now)
        may_revoke = state is api_key.State.LIVE and api_key.revocable_by(user_id=user.id, role=role)
        rows.append((api_key, state, may_revoke))
    context = {"form": form, "issued": issued, "resent": resent, "page": page, "rows": rows}
    return render(request, "accounts/keys.html", context, status=status)


@login_required
@require_POST
def key_revoke(request: HttpRequest, key_id: int) -> HttpResponse:
    user, team = _person_and_team(request)
    api_key = api_key_for_team(team=team, key_id=key_id)
    if api_key is None:
        raise Http404("No such key in this team.")  # another team's key is not confirmed to exist
    try:
        api_key_revoke(api_key=api_key, by=user)
    except ApiKeyPermissionDenied as error:
        raise PermissionDenied(error.message) from None
    messages.success(request, f"Key {api_key.masked} ({api_key.name or 'unnamed'}) is revoked.")
    return redirect("api-keys")
