"""The mails the sign-up pages send: plain text, short, with absolute links."""

from __future__ import annotations

import logging

from django.conf import settings
from django.core.mail import send_mail
from django.http import HttpRequest
from django.template.loader import render_to_string
from django.urls import reverse

from accounts.models import User
from accounts.tokens import email_verification_token, user_uidb64

logger = logging.getLogger(__name__)


def signup_mail_send(*, user: User, request: HttpRequest) -> None:
    """The one mail a sign-up (or a request for a new link) sends to `user`'s address.

    An account still waiting for verification gets a (new) verification link; a verified one
    gets a note that the account exists, with the login and password-reset links, so the
    address's owner learns what the sign-up page never says.
    """
    if user.email_verified_at is None:
        link = request.build_absolute_uri(
            reverse("verify-email", args=[user_uidb64(user), email_verification_token.make_token(user)])
        )
        template, subject = "registration/emails/verify_email.txt", "Confirm your email for Atelier"
        context = {"verify_url": link, "valid_days": round(settings.PASSWORD_RESET_TIMEOUT / 86400)}
    else:
        template, subject = "registration/emails/account_exists.txt", "You already have an Atelier account"
        context = {
            "login_url": request.build_absolute_uri(reverse("login")),
            "reset_url": request.build_absolute_uri(reverse("password_reset")),
        }
    body = render_to_string(template, {"email": user.email, **context})
    try:
        send_mail(subject, body, None, [user.email])
    except Exception:  # noqa: BLE001 - any backend's failure, as Django's password reset catches them
        # The page still answers as always (it must not tell this address apart); the person asks
        # for a new link from it.
        logger.exception("sign-up mail to user %s not sent", user.id)


def signup_mail_resend(*, email: str, request: HttpRequest) -> None:
    """A new link asked for: the sign-up's mail again to an account with that email (a new link
    while unverified, else the note that it exists); nothing to an address without one."""
    user = User.objects.filter(email__iexact=email).first()
    if user is not None:
        signup_mail_send(user=user, request=request)
