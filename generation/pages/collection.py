"""The collection (looks): the gallery with its search and filters, one look at full size, delete."""

from __future__ import annotations

from uuid import UUID

from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_GET, require_POST

from generation.pages.collection_filters import collection_search
from generation.pages.context import page_team
from generation.pages.outputs import output_view
from generation.selectors import look_list_for_team

PAGE_SIZE = 24


@login_required
@require_GET
def collection(request: HttpRequest) -> HttpResponse:
    search = collection_search(request.GET)
    looks = look_list_for_team(team=page_team(request), filters=search.filters)
    page = Paginator(looks, PAGE_SIZE).get_page(request.GET.get("page"))
    items = [output_view(look.output, look=look, title=look.job.prompt) for look in page]
    return render(request, "collection/list.html", {"page": page, "items": items, "search": search})


@login_required
@require_GET
def look_page(request: HttpRequest, look_id: UUID) -> HttpResponse:
    return look_page_response(request, look_id)


def look_page_response(request: HttpRequest, look_id: UUID) -> HttpResponse:
    """The look's page; also what a refused remix shows (generation/pages/remix.py)."""
    look = get_object_or_404(look_list_for_team(team=page_team(request)), id=look_id)
    item = output_view(look.output, look=look, title=look.job.prompt)
    return render(request, "collection/detail.html", {"look": look, "item": item})


@login_required
@require_POST
def look_delete(request: HttpRequest, look_id: UUID) -> HttpResponse:
    get_object_or_404(look_list_for_team(team=page_team(request)), id=look_id).delete()
    # Deleted from the lightbox, the person goes back to the page they were on (the collection's
    # page and filters, a job, a studio tab); only a path of this site, never another one.
    next_url = request.POST.get("next", "")
    if next_url and url_has_allowed_host_and_scheme(
        next_url, allowed_hosts={request.get_host()}, require_https=request.is_secure()
    ):
        return redirect(next_url)
    return redirect("collection")
