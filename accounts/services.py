"""Writes for users, teams and API keys."""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone

from accounts.models import ApiKey, Membership, Team, User
from accounts.quotas import Quota, quota_check
from accounts.selectors import membership_role
from config.errors import ServiceError, ValidationFailed
from credits.models import CreditAccount
from credits.services import credits_grant

API_KEY_PREFIX_BYTES = 6
API_KEY_SECRET_BYTES = 32
API_KEY_NAME_MAX = ApiKey._meta.get_field("name").max_length or 120


def api_key_hash(raw_key: str) -> str:
    # The key has 256 bits of entropy, so a plain SHA-256 cannot be brute-forced; a slow
    # password hash would only slow every API call.
    return hashlib.sha256(raw_key.encode()).hexdigest()


@transaction.atomic
def user_create(
    *, email: str, password: str | None, display_name: str = "", team_name: str = "", verified: bool = True
) -> User:
    """Create a user together with their personal team, which they own. A sign-up is not
    `verified` (cannot log in) until they open the link mailed to them."""
    user = User.objects.create_user(
        email=email,
        password=password,
        display_name=display_name,
        email_verified_at=timezone.now() if verified else None,
    )
    team = Team.objects.create(name=team_name or f"{display_name or email.split('@')[0]}'s team", personal_owner=user)
    Membership.objects.create(team=team, user=user, role=Membership.Role.OWNER)
    CreditAccount.objects.create(team=team)
    return user


def user_signup(*, email: str) -> User:
    """The account a sign-up is for: a new, unverified user (no credits yet) with their personal
    team, or the user already registered with that email, left as it is.

    A new account has no usable password: whoever opens the link mailed to the address chooses
    it (user_email_verify), so signing up someone else's address gives the signer nothing (no
    password of theirs waits in the account for its owner to verify). Either way the caller sends
    one mail (accounts/mails.py: signup_mail_send), and the page answers the same, so the page
    never tells whether an email is registered.
    """
    existing = User.objects.filter(email__iexact=email).first()
    if existing is not None:
        return existing
    try:
        with transaction.atomic():
            return user_create(email=email, password=None, verified=False)
    except IntegrityError:
        # The same email signed up at the same moment: the other request made the account.
        return User.objects.get(email__iexact=email)


def user_email_verify(*, user: User, password: str) -> bool:
    """Mark the user's email verified with the password its owner chose, and grant the welcome
    credits, once; True if this call did (False: already verified, or the account is inactive).

    1. Claim the verification with a conditional update that also sets the password: of two
       clicks at once, one wins, and only the winner's password is stored.
    2. Grant SIGNUP_CREDITS (none when 0) under an idempotency key of its own, in the same
       transaction, so the credits come exactly once with the verification.
    """
    user.set_password(password)
    with transaction.atomic():
        claimed = User.objects.filter(id=user.id, email_verified_at__isnull=True, is_active=True).update(
            email_verified_at=timezone.now(), password=user.password
        )
        if claimed and settings.SIGNUP_CREDITS:
            credits_grant(
                team=user.personal_team,
                amount=settings.SIGNUP_CREDITS,
                idempotency_key=f"signup:{user.id}",
                actor=None,
                memo="Welcome credits",
            )
    user.refresh_from_db(fields=["email_verified_at", "password", "is_active"])
    return bool(claimed)


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


class ApiKeyPermissionDenied(ServiceError):
    status_code = 403
    code = "PERMISSION_DENIED"


@transaction.atomic
def api_key_create(*, team: Team, created_by: User, name: str = "", expires_at: datetime | None = None) -> IssuedApiKey:
    """Issue a key that acts for its creator in `team` through their membership.

    1. Validate: a name of at most API_KEY_NAME_MAX characters, its surrounding spaces dropped
       (blank is allowed here, the key is then told apart by its prefix; the page and the API ask
       people for one), and an expiry (if any) in the future.
    2. Lock the team row, so two creations at once cannot both pass the limit, and refuse a
       key over the team's Quota.API_KEYS (API_KEYS_PER_TEAM) live ones: QuotaExceeded.
    3. Store the key's hash; the raw key is returned once and never stored.
    """
    name = name.strip()
    if len(name) > API_KEY_NAME_MAX:
        raise ValidationFailed({"name": [f"At most {API_KEY_NAME_MAX} characters."]})
    now = timezone.now()
    if expires_at is not None and expires_at <= now:
        raise ValidationFailed({"expires_at": ["Must be in the future."]})
    # no_key: a plain FOR UPDATE would also block inserts of rows pointing at the team, as the
    # other team locks avoid.
    Team.objects.select_for_update(no_key=True).filter(id=team.id).first()
    membership = Membership.objects.filter(team=team, user=created_by).first()
    if membership is None:
        raise ApiKeyPermissionDenied("Only a member of the team can make a key for it.")
    live = ApiKey.objects.filter(team=team).live(now).count()
    quota_check(team, Quota.API_KEYS, used=live)
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


def api_key_revoke(*, api_key: ApiKey, by: User | None) -> ApiKey:
    """End a key for good. Idempotent: a revoked key keeps the time it was first revoked.

    `by` is the person asking, held to `ApiKey.revocable_by` (their own key, or any key of a team
    they own); None is an operator in the admin or the system (a member's removal).
    """
    if by is not None:
        role = membership_role(team=api_key.team, user=by)
        if not api_key.revocable_by(user_id=by.id, role=role):
            raise ApiKeyPermissionDenied("Only the team's owners can revoke another member's key.")
    ApiKey.objects.filter(id=api_key.id, revoked_at__isnull=True).update(revoked_at=timezone.now())
    api_key.refresh_from_db(fields=["revoked_at"])
    return api_key


@transaction.atomic
def membership_remove(*, membership: Membership) -> int:
    """Take a person out of a team, and their keys for it with them; returns how many keys died.

    The keys are marked revoked (what the keys page and API show); deleting the membership also
    empties their `membership` (SET_NULL), so they stay dead if the person joins the team again.
    """
    revoked = ApiKey.objects.filter(
        team_id=membership.team_id, created_by_id=membership.user_id, revoked_at__isnull=True
    ).update(revoked_at=timezone.now())
    membership.delete()
    return revoked


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
