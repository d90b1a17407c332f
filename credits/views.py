from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import render

from accounts.teams import current_team
from credits.models import CreditAccount
from credits.selectors import credit_activity_page, ledger_page

LEDGER_VIEW = "ledger"  # ?view=ledger: every entry, one a row


@login_required
def credits_page(request: HttpRequest) -> HttpResponse:
    """The team's balances and what moved them: one row per job (its hold, what it spent and
    released) and per grant or adjustment; `?view=ledger` lists every ledger entry instead.
    The 402 error links here."""
    team = current_team(request)
    if team is None:
        raise Http404("You are not a member of any team.")
    # A read never writes: a team without an account yet is shown an empty one.
    account = CreditAccount.objects.select_related("team").filter(team=team).first() or CreditAccount(team=team)
    page_number = request.GET.get("page")
    context = {"team": team, "account": account, "ledger_view": LEDGER_VIEW}
    if request.GET.get("view") == LEDGER_VIEW:
        page, entries = ledger_page(account=account, page_number=page_number) if account.pk else (None, [])
        return render(request, "credits/ledger.html", {**context, "page": page, "entries": entries})
    page, rows = credit_activity_page(account=account, page_number=page_number) if account.pk else (None, [])
    return render(request, "credits/credits.html", {**context, "page": page, "rows": rows})
