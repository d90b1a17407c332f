from __future__ import annotations

from django.contrib.auth.forms import BaseUserCreationForm

from accounts.models import User


class SignupForm(BaseUserCreationForm):
    """Email and a password typed twice; Django's password validators apply."""

    class Meta:
        model = User
        fields = ("email",)

    def clean_email(self) -> str:
        email = self.cleaned_data["email"].strip().lower()
        if User.objects.filter(email__iexact=email).exists():
            from django.core.exceptions import ValidationError

            raise ValidationError("An account with this email already exists; log in instead.")
        return email
