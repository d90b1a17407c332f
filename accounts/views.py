from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from django.conf import settings
from django.contrib import messages
from django.contrib.auth import login
from django.contrib.auth import views as auth_views
from django.contrib.auth.decorators import login_required
from django.contrib.auth.forms import SetPasswordForm
from django.forms import BaseForm
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_http_methods, require_POST

from accounts.forms import LoginForm, ResendVerificationForm, SignupForm, VerifiedPasswordResetForm
from accounts.lockout import lockout_lift_for_account
from accounts.mails import signup_mail_resend, signup_mail_send
from accounts.models import Team, User
from accounts.services import user_email_verify, user_signup
from accounts.teams import current_team_set
from accounts.throttles import signup_throttle_wait
from accounts.tokens import email_verification_token, user_from_uidb64

PASSWORD_RESET_TEMPLATE = "registration/password_reset_form.html"
VERIFY_TEMPLATE = "registration/verify_email.html"


def _rate_limited(request: HttpRequest, template: str, context: dict[str, Any], wait_seconds: int) -> HttpResponse:
    """The page again, refused: 429, how long to wait, and Retry-After; nothing done, nothing sent."""
    response = render(request, template, {**context, "rate_limited_minutes": math.ceil(wait_seconds / 60)}, status=429)
    response["Retry-After"] = str(wait_seconds)
    return response


def _mail_form_page(
    request: HttpRequest, *, form_class: type[BaseForm], template: str, send: Callable[[dict[str, Any]], None]
) -> HttpResponse:
    """A page whose form sends a mail (sign-up, a new verification link): rate-limited per client
    address, and one "check your inbox" answer whatever the email, so it never tells whether an
    email is registered (the mail does)."""
    if request.method == "POST":
        wait = signup_throttle_wait(request)
        if wait is not None:
            form = form_class(initial={"email": request.POST.get("email", "")})
            return _rate_limited(request, template, {"form": form}, wait)
        form = form_class(request.POST)
        if form.is_valid():
            send(form.cleaned_data)
            return render(request, "registration/check_inbox.html", {"email": form.cleaned_data["email"]})
    else:
        form = form_class()
    return render(request, template, {"form": form}, status=400 if form.errors else 200)


@require_http_methods(["GET", "POST"])
def signup(request: HttpRequest) -> HttpResponse:
    """Sign up with an email only: a new email gets an unverified account without a password and a
    link to choose one; an unverified one, a new link; a verified one, a mail saying it exists."""
    if request.user.is_authenticated:
        return redirect("studio")

    def send(data: dict[str, Any]) -> None:
        user = user_signup(email=data["email"])
        signup_mail_send(user=user, request=request)

    return _mail_form_page(request, form_class=SignupForm, template="registration/signup.html", send=send)


@require_http_methods(["GET", "POST"])
def verify_resend(request: HttpRequest) -> HttpResponse:
    """Ask for a new verification link; the same answer for every email."""
    return _mail_form_page(
        request,
        form_class=ResendVerificationForm,
        template="registration/verify_resend.html",
        send=lambda data: signup_mail_resend(email=data["email"], request=request),
    )


@require_http_methods(["GET", "POST"])
def verify_email(request: HttpRequest, uidb64: str, token: str) -> HttpResponse:
    """The link mailed at sign-up: whoever holds it controls the inbox, and chooses the password.

    Opening it (GET) changes nothing: a mail scanner that follows links must not use it up nor be
    logged in. Its form (POST) sets the password (Django's validators apply), verifies the email,
    grants the welcome credits once, logs the person in and opens the studio. An inactive
    account's link does not work.
    """
    user = user_from_uidb64(uidb64)
    if user is None or not user.is_active or not email_verification_token.check_token(user, token):
        return render(request, VERIFY_TEMPLATE, {"validlink": False})
    form = SetPasswordForm(user, request.POST if request.method == "POST" else None)
    if not form.is_valid():
        return render(
            request,
            VERIFY_TEMPLATE,
            {"validlink": True, "email": user.email, "form": form},
            status=400 if form.errors else 200,
        )
    if not user_email_verify(user=user, password=form.cleaned_data["new_password1"]):
        # Another click verified it first (or the account was deactivated meanwhile).
        return render(request, VERIFY_TEMPLATE, {"validlink": False})
    login(request, user, backend="django.contrib.auth.backends.ModelBackend")
    if settings.SIGNUP_CREDITS:
        messages.success(
            request, f"Your email is confirmed. Welcome to Atelier: {settings.SIGNUP_CREDITS} credits to start with."
        )
    else:
        messages.success(request, "Your email is confirmed. Welcome to Atelier.")
    return redirect("studio")


class LoginView(auth_views.LoginView):
    """Django's login, refusing accounts whose email is not verified yet. Failed logins are
    counted, and locked out past LOGIN_FAILURE_LIMIT, by django-axes (accounts/lockout.py)."""

    authentication_form = LoginForm


class PasswordResetView(auth_views.PasswordResetView):
    """Django's password reset: a link only to a verified account, the same page for every email,
    and the sign-up's rate limit, since every request may send a mail."""

    form_class = VerifiedPasswordResetForm
    template_name = PASSWORD_RESET_TEMPLATE
    email_template_name = "registration/emails/password_reset.txt"
    subject_template_name = "registration/emails/password_reset_subject.txt"

    def post(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        wait = signup_throttle_wait(request)
        if wait is not None:
            form = self.form_class(initial={"email": request.POST.get("email", "")})
            return _rate_limited(request, PASSWORD_RESET_TEMPLATE, self.get_context_data(form=form), wait)
        return super().post(request, *args, **kwargs)


class PasswordResetConfirmView(auth_views.PasswordResetConfirmView):
    """Django's reset link. Setting a new password through it lifts the account's lockout, so
    "reset your password meanwhile" on the lockout page is true."""

    def form_valid(self, form: Any) -> HttpResponse:
        response = super().form_valid(form)
        lockout_lift_for_account(form.user)
        return response


@login_required
@require_POST
def team_switch(request: HttpRequest) -> HttpResponse:
    """Make another of the user's teams the session's current team."""
    assert isinstance(request.user, User)  # login_required
    try:
        team_id = int(request.POST.get("team", ""))
    except ValueError:
        team_id = 0
    team = Team.objects.filter(id=team_id, memberships__user=request.user).first() if 0 < team_id < 2**31 else None
    if team is None:
        raise Http404("No such team.")  # another team's id is not confirmed to exist
    current_team_set(request, team)
    target = request.POST.get("next", "")
    if not url_has_allowed_host_and_scheme(
        target, allowed_hosts={request.get_host()}, require_https=request.is_secure()
    ):
        target = "home"
    return redirect(target)
