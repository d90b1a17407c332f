"""Writes for users, teams and API keys."""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime

from django.conf import settings
from django.db import transaction

from accounts.models import ApiKey, Membership, Team, User
from credits.models import CreditAccount

API_KEY_PREFIX_BYTES = 6
API_KEY_SECRET_BYTES = 32


def api_key_hash(raw_key: str) -> str:
    # The key has 256 bits of entropy, so a plain SHA-256 cannot be brute-forced; a slow
    # password hash would only slow every API call.
    return hashlib.sha256(raw_key.encode()).hexdigest()


@transaction.atomic
def user_create(*, email: str, password: str | None, display_name: str = "", team_name: str = "") -> User:
    """Create a user together with their personal team, which they own."""
    user = User.objects.create_user(email=email, password=password, display_name=display_name)
    team = Team.objects.create(name=team_name or f"{display_name or email.split('@')[0]}'s team", personal_owner=user)
    Membership.objects.create(team=team, user=user, role=Membership.Role.OWNER)
    CreditAccount.objects.create(team=team)
    return user


@transaction.atomic
def user_signup(*, email: str, password: str) -> User:
    """A new person: their user, their personal team, and the welcome credits of SIGNUP_CREDITS."""
    from credits.services import credits_grant

    user = user_create(email=email, password=password)
    if settings.SIGNUP_CREDITS:
        credits_grant(
            team=user.personal_team,
            amount=settings.SIGNUP_CREDITS,
            idempotency_key=f"signup:{user.id}",
            actor=None,
            memo="Welcome credits",
        )
    return user


@transaction.atomic
def team_create(*, name: str, owner: User) -> Team:
    team = Team.objects.create(name=name)
    Membership.objects.create(team=team, user=owner, role=Membership.Role.OWNER)
    CreditAccount.objects.create(team=team)
    return team


def membership_ensure(*, team: Team, user: User, role: str = Membership.Role.MEMBER) -> Membership:
    membership, _ = Membership.objects.get_or_create(team=team, user=user, defaults={"role": role})
    return membership


@dataclass(frozen=True)
class IssuedApiKey:
    api_key: ApiKey
    raw_key: str  # shown once, never stored


def api_key_create(*, team: Team, created_by: User, name: str = "", expires_at: datetime | None = None) -> IssuedApiKey:
    """A key acts for its creator in `team` through their membership, which must exist."""
    membership = Membership.objects.get(team=team, user=created_by)
    prefix = secrets.token_hex(API_KEY_PREFIX_BYTES)
    raw_key = f"atl_{prefix}_{secrets.token_urlsafe(API_KEY_SECRET_BYTES)}"
    api_key = ApiKey.objects.create(
        team=team,
        created_by=created_by,
        membership=membership,
        name=name,
        prefix=prefix,
        key_hash=api_key_hash(raw_key),
        expires_at=expires_at,
    )
    return IssuedApiKey(api_key=api_key, raw_key=raw_key)


@transaction.atomic
def account_bootstrap(*, email: str, password: str, team_name: str) -> tuple[User, Team, IssuedApiKey]:
    """Create or reuse a user, a team of that name they own, and issue a fresh API key.

    1. The user is found by email or created; a new user's personal team gets the team's name,
       so the named team is the one their browser session starts in.
    2. The team is the user's team of that name, or a new one they own.
    3. A new API key for that team is issued; earlier keys stay valid.
    """
    user = User.objects.filter(email__iexact=email).first()
    if user is None:
        user = user_create(email=email, password=password, team_name=team_name)
    else:
        user.set_password(password)
        user.save(update_fields=["password"])
    team = Team.objects.filter(memberships__user=user, name=team_name).order_by("id").first()
    if team is None:
        team = team_create(name=team_name, owner=user)
    issued = api_key_create(team=team, created_by=user, name="bootstrap")
    return user, team, issued
