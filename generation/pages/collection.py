"""The collection (looks): the gallery, one look at full size, delete."""

from __future__ import annotations

from uuid import UUID

from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_GET, require_POST

from generation.pages.context import page_team
from generation.pages.outputs import output_view
from generation.selectors import look_list_for_team

PAGE_SIZE = 24


@login_required
@require_GET
def collection(request: HttpRequest) -> HttpResponse:
    page = Paginator(look_list_for_team(team=page_team(request)), PAGE_SIZE).get_page(request.GET.get("page"))
    looks = [(look, output_view(look.output)) for look in page]
    return render(request, "collection/list.html", {"page": page, "looks": looks})


@login_required
@require_GET
def look_page(request: HttpRequest, look_id: UUID) -> HttpResponse:
    return _look_page(request, look_id)


def _look_page(request: HttpRequest, look_id: UUID) -> HttpResponse:
    look = get_object_or_404(look_list_for_team(team=page_team(request)), id=look_id)
    return render(request, "collection/detail.html", {"look": look, "item": output_view(look.output)})


@login_required
@require_POST
def look_delete(request: HttpRequest, look_id: UUID) -> HttpResponse:
    get_object_or_404(look_list_for_team(team=page_team(request)), id=look_id).delete()
    return redirect("collection")
