"""The notice every page of a team shows while one of its webhook endpoints is disabled
automatically ("the team is told on its pages"). A context processor: it only reads, lazily,
so a page that does not draw the notice (a partial, an anonymous page) pays nothing, and one
that does pays one indexed query."""

from __future__ import annotations

from django.http import HttpRequest
from django.utils.functional import SimpleLazyObject

from accounts.teams import current_team
from webhooks.selectors import DisabledNotice, endpoints_disabled_notice


def webhook_notice(request: HttpRequest) -> dict:
    if not request.user.is_authenticated:
        return {}

    def notice() -> DisabledNotice | None:
        team = current_team(request)
        return endpoints_disabled_notice(team=team) if team is not None else None

    return {"webhook_notice": SimpleLazyObject(notice)}
