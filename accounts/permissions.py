from __future__ import annotations

from typing import Any

from rest_framework import permissions
from rest_framework.request import Request

from accounts.models import ApiKey, Team
from accounts.teams import current_team


class IsTeamMember(permissions.BasePermission):
    """Authenticated and acting for a team the caller belongs to (sets `request.team`)."""

    message = "You are not a member of any team."

    def has_permission(self, request: Request, view: Any) -> bool:
        if not request.user or not request.user.is_authenticated:
            return False
        team = current_team(request)
        request.team = team  # type: ignore[attr-defined]
        return team is not None


class SessionOnly(permissions.BasePermission):
    """Refuses requests made with an API key: key management needs a signed-in session, so a
    leaked key cannot make another key that outlives its own revocation."""

    message = "API keys are managed from a signed-in browser session (the API keys page), not with an API key."

    def has_permission(self, request: Request, view: Any) -> bool:
        return not isinstance(request.auth, ApiKey)


def request_team(request: Request) -> Team:
    """The team `IsTeamMember` found for this request, typed (DRF's Request declares no `team`)."""
    team = getattr(request, "team", None)
    if not isinstance(team, Team):
        raise RuntimeError("request.team is only set once IsTeamMember has let the request in.")
    return team
