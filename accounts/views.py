from __future__ import annotations

from django.contrib.auth import login
from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_POST

from accounts.forms import SignupForm
from accounts.models import Team, User
from accounts.services import user_signup
from accounts.teams import current_team_set


def signup(request: HttpRequest) -> HttpResponse:
    if request.user.is_authenticated:
        return redirect("studio")
    form = SignupForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        user = user_signup(email=form.cleaned_data["email"], password=form.cleaned_data["password1"])
        login(request, user, backend="django.contrib.auth.backends.ModelBackend")
        return redirect("studio")
    return render(request, "registration/signup.html", {"form": form}, status=400 if form.errors else 200)


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
