from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from django import forms
from django.contrib.auth.forms import AuthenticationForm, PasswordResetForm
from django.core.exceptions import ValidationError


class SignupForm(forms.Form):
    """Only the email: whoever opens the link mailed to it chooses the password (the verification
    page), so nobody can set a password on an address they do not control.

    It never says whether the email is registered (the mail does): a registered email passes.
    """

    email = forms.EmailField(max_length=254, widget=forms.EmailInput(attrs={"autocomplete": "email"}))

    def clean_email(self) -> str:
        return self.cleaned_data["email"].strip().lower()


class LoginForm(AuthenticationForm):
    """Django's login form; an account whose email is not verified yet cannot log in."""

    unverified = False  # the login page then offers a new link

    def confirm_login_allowed(self, user: Any) -> None:
        super().confirm_login_allowed(user)
        if user.email_verified_at is None:
            self.unverified = True
            raise ValidationError(
                "Confirm your email address first: open the link we sent you.", code="email_unverified"
            )


class ResendVerificationForm(SignupForm):
    """The email of an account waiting for verification; it gets a new link."""


class VerifiedPasswordResetForm(PasswordResetForm):
    """Sends a reset link only to accounts whose email is verified: the owner of an unverified
    one confirms it first. The page answers the same for every email, as Django's does."""

    def get_users(self, email: str) -> Iterator[Any]:
        return (user for user in super().get_users(email) if user.email_verified_at is not None)
