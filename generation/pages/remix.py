"""Remix: a look's settings, and the look itself, in a new studio tab; "More like this":
variations of a look submitted at once, in a new tab where their progress shows."""

from __future__ import annotations

from uuid import UUID

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect
from django.views.decorators.http import require_POST

from accounts.quotas import Quota, QuotaExceeded
from config.errors import ServiceError
from config.throttles import RateScope, rate_limit_wait
from credits.services import InsufficientCredits
from generation.models import Look, RemixMode
from generation.pages.collection import look_page_response
from generation.pages.context import page_team, page_user
from generation.pages.limits import rate_limited, too_many_message, too_many_response
from generation.pages.submit_token import idempotency_key_of
from generation.selectors import look_list_for_team
from generation.services.remix import RemixResult, look_variations_submit, tab_remix

# The two ways the remix form attaches the look; anything else is the default.
ATTACH_MODES = {"reference": RemixMode.REFERENCE, "source": RemixMode.SOURCE}


def _team_look(request: HttpRequest, look_id: UUID) -> Look:
    # Another team's look is "not found".
    return get_object_or_404(look_list_for_team(team=page_team(request)), id=look_id)


@login_required
@require_POST
@rate_limited(RateScope.API, page=look_page_response)
def look_remix(request: HttpRequest, look_id: UUID) -> HttpResponse:
    """`attach=reference` (the default) or `attach=source` (an edit of the look)."""
    look = _team_look(request, look_id)
    mode = ATTACH_MODES.get(request.POST.get("attach", ""), RemixMode.REFERENCE)
    try:
        result = tab_remix(look=look, user=page_user(request), team=page_team(request), mode=mode)
    except ServiceError as error:
        messages.error(request, _refusal(error, "remix this look"))
        return redirect("look-page", look_id=look.id)
    if result.attached:
        # The attached image sits among the form's uploads, below the fold: say where it went.
        where = "as the image to edit" if mode is RemixMode.SOURCE else "as reference 1"
        messages.success(request, f"This look is attached {where}; a new seed is drawn when you press Generate.")
    return _to_tab(request, result)


@login_required
@require_POST
def look_variations(request: HttpRequest, look_id: UUID) -> HttpResponse:
    look = _team_look(request, look_id)
    # The submit limit, as Generate: the button spends credits. Checked before anything is stored.
    wait = rate_limit_wait(request, RateScope.SUBMIT)
    if wait is not None:
        messages.error(request, too_many_message(wait, "generations"))
        return too_many_response(look_page_response(request, look_id), wait)
    idempotency_key = idempotency_key_of(request, scope="variations")
    try:
        result = look_variations_submit(
            look=look, user=page_user(request), team=page_team(request), idempotency_key=idempotency_key
        )
    except InsufficientCredits as error:
        required, available = error.details["required"], error.details["available"]
        messages.error(
            request,
            f"More like this needs {required} credits and your team has {available}: nothing was charged. "
            "Add credits, or remix the look with fewer images.",
        )
        return redirect("look-page", look_id=look.id)
    except ServiceError as error:
        messages.error(request, _refusal(error, "make variations of this look"))
        return redirect("look-page", look_id=look.id)
    return _to_tab(request, result)


def _refusal(error: ServiceError, action: str) -> str:
    """What the person reads when a remix is refused; only the tabs quota is helped by closing a
    tab (a draft too large for the team's quota, a long prompt, is not)."""
    if isinstance(error, QuotaExceeded) and error.quota is Quota.STUDIO_TABS:
        return f"{error.message} Close a studio tab to {action}."
    if isinstance(error, QuotaExceeded) and error.quota is Quota.ACTIVE_JOBS:
        return f"{error.message} Wait for one to finish, or cancel one, and try again."
    return error.message


def _to_tab(request: HttpRequest, result: RemixResult) -> HttpResponse:
    if result.note:
        messages.info(request, result.note)
    if result.tab is None:  # earlier variations whose tab was closed since
        assert result.job is not None
        return redirect("job-page", job_id=result.job.id)
    return redirect("studio-tab", tab_id=result.tab.id)
