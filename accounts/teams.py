"""Which team a request acts for.

An API key acts for its own team. A browser session acts for the team chosen in the team
switcher (kept in the session), falling back to the user's personal team, then any team of theirs.
"""

from __future__ import annotations

from django.http import HttpRequest

from accounts.models import ApiKey, Team, User

SESSION_TEAM_KEY = "current_team_id"


def team_for_user(user: User, preferred_team_id: int | None = None) -> Team | None:
    teams = Team.objects.filter(memberships__user=user)
    if preferred_team_id is not None:
        team = teams.filter(id=preferred_team_id).first()
        if team is not None:
            return team
    return teams.filter(personal_owner=user).first() or teams.order_by("id").first()


def current_team(request: HttpRequest) -> Team | None:
    cached = getattr(request, "_atelier_team", None)
    if cached is not None:
        return cached
    auth = getattr(request, "auth", None)
    team: Team | None
    if isinstance(auth, ApiKey):
        team = auth.team
    elif request.user.is_authenticated:
        team = team_for_user(request.user, request.session.get(SESSION_TEAM_KEY))  # type: ignore[arg-type]
    else:
        team = None
    request._atelier_team = team  # type: ignore[attr-defined]
    return team


def current_team_set(request: HttpRequest, team: Team) -> None:
    request.session[SESSION_TEAM_KEY] = team.id
    request._atelier_team = team  # type: ignore[attr-defined]
