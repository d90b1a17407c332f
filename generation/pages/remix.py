"""Remix: a look's settings (and the look itself) in a new studio tab."""

from __future__ import annotations

from uuid import UUID

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect
from django.views.decorators.http import require_POST

from accounts.quotas import Quota, QuotaExceeded
from config.throttles import RateScope
from generation.pages.collection import _look_page
from generation.pages.context import page_team, page_user
from generation.pages.limits import rate_limited
from generation.selectors import look_list_for_team
from generation.services.studio import tab_remix


@login_required
@require_POST
@rate_limited(RateScope.API, page=_look_page)
def look_remix(request: HttpRequest, look_id: UUID) -> HttpResponse:
    look = get_object_or_404(look_list_for_team(team=page_team(request)), id=look_id)
    try:
        tab = tab_remix(look=look, user=page_user(request), team=page_team(request))
    except QuotaExceeded as error:
        # Only the tabs quota is helped by closing a tab; a draft too large for the team's
        # quota (a long prompt) is not.
        advice = " Close a studio tab to remix this look." if error.quota is Quota.STUDIO_TABS else ""
        messages.error(request, f"{error.message}{advice}")
        return redirect("look-page", look_id=look.id)
    return redirect("studio-tab", tab_id=tab.id)
