from __future__ import annotations

from datetime import datetime
from typing import ClassVar

from django.contrib.auth.base_user import AbstractBaseUser, BaseUserManager
from django.contrib.auth.models import PermissionsMixin
from django.core.validators import MinValueValidator
from django.db import models
from django.db.models import F, Q
from django.utils import timezone


class UserManager(BaseUserManager["User"]):
    use_in_migrations = True

    def create_user(self, email: str, password: str | None = None, **extra: object) -> User:
        if not email:
            raise ValueError("An email address is required.")
        # Accounts made by operators, commands and tests are verified; sign-up passes None.
        extra.setdefault("email_verified_at", timezone.now())
        user = self.model(email=self.normalize_email(email).lower(), **extra)
        user.set_password(password)
        user.save(using=self._db)
        return user

    def get_by_natural_key(self, username: str | None) -> User:
        # Emails are stored in lower case (sign-up lowercases them); log in without caring.
        return self.get(email__iexact=username)

    def create_superuser(self, email: str, password: str | None = None, **extra: object) -> User:
        extra.setdefault("is_staff", True)
        extra.setdefault("is_superuser", True)
        return self.create_user(email, password, **extra)


class User(AbstractBaseUser, PermissionsMixin):
    """Logs in with email and password; belongs to teams through `Membership`."""

    email = models.EmailField(unique=True)
    display_name = models.CharField(max_length=120, blank=True)
    is_active = models.BooleanField(default=True)
    is_staff = models.BooleanField(default=False)
    date_joined = models.DateTimeField(default=timezone.now)
    # A new sign-up cannot log in (nor spend) until they open the link mailed to them.
    email_verified_at = models.DateTimeField(null=True, blank=True)

    objects = UserManager()

    USERNAME_FIELD = "email"
    EMAIL_FIELD = "email"
    REQUIRED_FIELDS: ClassVar[list[str]] = []

    def __str__(self) -> str:
        return self.email


class Team(models.Model):
    name = models.CharField(max_length=120)
    # A personal team is made for every new user; `personal_owner` marks it.
    personal_owner = models.OneToOneField(
        User, null=True, blank=True, on_delete=models.SET_NULL, related_name="personal_team"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    members = models.ManyToManyField(User, through="Membership", related_name="teams")
    # Per-team overrides of the quotas in settings (accounts/quotas.py); empty means the setting.
    quota_active_jobs = models.PositiveIntegerField(null=True, blank=True)
    quota_uploads = models.PositiveIntegerField(null=True, blank=True)
    quota_upload_mb = models.PositiveIntegerField(null=True, blank=True)
    quota_studio_tabs = models.PositiveIntegerField(null=True, blank=True)
    quota_draft_kb = models.PositiveIntegerField(null=True, blank=True)
    # The cap on running jobs (TEAM_MAX_RUNNING_JOBS): bigger plans get more at once.
    quota_running_jobs = models.PositiveIntegerField(null=True, blank=True, validators=[MinValueValidator(1)])

    def __str__(self) -> str:
        return self.name


class Membership(models.Model):
    class Role(models.TextChoices):
        OWNER = "owner", "Owner"
        MEMBER = "member", "Member"

    team = models.ForeignKey(Team, on_delete=models.CASCADE, related_name="memberships")
    user = models.ForeignKey(User, on_delete=models.CASCADE, related_name="memberships")
    role = models.CharField(max_length=10, choices=Role.choices, default=Role.MEMBER)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["team", "user"], name="accounts_membership_unique_user"),
        ]

    def __str__(self) -> str:
        return f"{self.user} in {self.team} ({self.role})"


class ApiKeyQuerySet(models.QuerySet["ApiKey"]):
    def live(self, now: datetime | None = None) -> ApiKeyQuerySet:
        """Keys whose `state` is live, in SQL (the per-team limit counts them): keep the two alike."""
        now = now or timezone.now()
        # The membership's user is the key's creator: this also excludes no membership.
        return self.filter(revoked_at__isnull=True, membership__user_id=F("created_by_id")).filter(
            Q(expires_at__isnull=True) | Q(expires_at__gt=now)
        )


class ApiKey(models.Model):
    """A team-scoped API key. Only a SHA-256 of the key is stored; the key is shown once.

    The key reads `atl_<prefix>_<secret>`; the prefix is stored in clear so a person can tell
    their keys apart and the authenticator can find the row without scanning.
    """

    class State(models.TextChoices):
        LIVE = "live", "Live"
        REVOKED = "revoked", "Revoked"
        EXPIRED = "expired", "Expired"
        MEMBER_REMOVED = "member_removed", "Member removed"

    team = models.ForeignKey(Team, on_delete=models.CASCADE, related_name="api_keys")
    created_by = models.ForeignKey(User, null=True, on_delete=models.SET_NULL, related_name="api_keys")
    # The membership the key acts through. Removing the member empties it for good: a key never
    # comes back to life when the person is added to the team again (a new membership).
    membership = models.ForeignKey(
        Membership, null=True, blank=True, on_delete=models.SET_NULL, related_name="api_keys"
    )
    name = models.CharField(max_length=120, blank=True)
    prefix = models.CharField(max_length=16, unique=True)  # serves the lookup on every API call
    key_hash = models.CharField(max_length=64)
    created_at = models.DateTimeField(auto_now_add=True)
    last_used_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)
    expires_at = models.DateTimeField(null=True, blank=True)

    objects = ApiKeyQuerySet.as_manager()

    class Meta:
        constraints = [
            models.CheckConstraint(condition=~Q(key_hash=""), name="accounts_apikey_hash_present"),
        ]

    def __str__(self) -> str:
        return f"atl_{self.prefix}_… ({self.team})"

    @property
    def masked(self) -> str:
        """How a person recognises the key without its secret."""
        return f"atl_{self.prefix}_…"

    def state_at(self, now: datetime) -> ApiKey.State:
        """Whether the key authenticates, and if not, why. The one home of this rule: the
        authenticator, the keys page and API, and the admin read it (`live()` is its SQL twin).

        Revoked wins over the rest (a person ended it); a removed member's key is dead for good
        (its membership is gone, even if they join again), and so is a key whose membership is no
        longer its creator's (an operator changed the membership's user: the key must not act
        for someone else); an expired key is dead by its date. Load `membership` with the key
        (select_related) where many keys are read.
        """
        if self.revoked_at is not None:
            return self.State.REVOKED
        if self.membership_id is None or self.membership is None or self.membership.user_id != self.created_by_id:
            return self.State.MEMBER_REMOVED
        if self.expires_at is not None and self.expires_at <= now:
            return self.State.EXPIRED
        return self.State.LIVE

    @property
    def state(self) -> ApiKey.State:
        return self.state_at(timezone.now())

    @property
    def is_live(self) -> bool:
        return self.state is self.State.LIVE

    def revocable_by(self, *, user_id: int, role: Membership.Role | None) -> bool:
        """A person revokes their own keys; an owner of the team revokes anyone's in it."""
        return role == Membership.Role.OWNER or (self.created_by_id is not None and self.created_by_id == user_id)
