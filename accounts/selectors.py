"""Reads for teams and their API keys (the keys page and API share them)."""

from __future__ import annotations

from django.db.models import QuerySet

from accounts.models import ApiKey, Membership, Team, User

# Row ids are 64-bit; a larger number in a URL is simply no key, not a database error.
_MAX_ROW_ID = 2**63 - 1


def api_key_list_for_team(*, team: Team) -> QuerySet[ApiKey]:
    """The team's keys, dead ones too (a person sees when and why a key stopped), newest first."""
    return ApiKey.objects.filter(team=team).select_related("created_by", "membership").order_by("-created_at", "-id")


def api_key_for_team(*, team: Team, key_id: int) -> ApiKey | None:
    """One key of the team; another team's key is None, like a key that does not exist."""
    if not 0 < key_id <= _MAX_ROW_ID:
        return None
    return ApiKey.objects.filter(team=team, id=key_id).select_related("created_by", "membership").first()


def membership_role(*, team: Team, user: User) -> Membership.Role | None:
    """The person's role in the team, None when they are not a member."""
    role = Membership.objects.filter(team=team, user=user).values_list("role", flat=True).first()
    return None if role is None else Membership.Role(role)
