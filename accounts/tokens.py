"""The token in an email-verification link."""

from __future__ import annotations

from django.contrib.auth.base_user import AbstractBaseUser
from django.contrib.auth.tokens import PasswordResetTokenGenerator
from django.utils.encoding import force_bytes
from django.utils.http import urlsafe_base64_decode, urlsafe_base64_encode

from accounts.models import User


class EmailVerificationTokenGenerator(PasswordResetTokenGenerator):
    """Django's signed, timestamped password-reset token with a salt of its own (a reset link is
    no verification link, nor the reverse) and a hash of what verifying changes (the verification
    time and the password chosen with it): once the email is verified and the password set, the
    link no longer works. It expires after PASSWORD_RESET_TIMEOUT (3 days)."""

    key_salt = "accounts.tokens.EmailVerificationTokenGenerator"

    def _make_hash_value(self, user: AbstractBaseUser, timestamp: int) -> str:
        verified_at = getattr(user, "email_verified_at", None)
        # Microseconds dropped as Django's own token drops them from last_login: some databases
        # store fewer digits than Python holds.
        verified = "" if verified_at is None else verified_at.replace(microsecond=0, tzinfo=None)
        return f"{user.pk}{user.password}{getattr(user, 'email', '')}{verified}{timestamp}"


email_verification_token = EmailVerificationTokenGenerator()


def user_uidb64(user: User) -> str:
    return urlsafe_base64_encode(force_bytes(user.pk))


def user_from_uidb64(uidb64: str) -> User | None:
    """The user a link names, or None for a malformed or unknown id."""
    try:
        user_id = int(urlsafe_base64_decode(uidb64).decode())
    except (ValueError, TypeError, OverflowError, UnicodeDecodeError):
        return None
    if not 0 < user_id < 2**63:
        return None
    return User.objects.filter(pk=user_id).first()
