from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import render

from accounts.teams import current_team
from credits.actors import LedgerActors
from credits.models import CreditAccount


@login_required
def credits_page(request: HttpRequest) -> HttpResponse:
    """The team's balances and ledger; the 402 error links here."""
    team = current_team(request)
    if team is None:
        raise Http404("You are not a member of any team.")
    account, _ = CreditAccount.objects.get_or_create(team=team)
    page = Paginator(account.entries.select_related("actor").order_by("-id"), 50).get_page(request.GET.get("page"))
    actors = LedgerActors(team)
    rows = [(entry, actors.shown(entry)) for entry in page]
    return render(request, "credits/credits.html", {"team": team, "account": account, "page": page, "rows": rows})
