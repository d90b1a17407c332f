"""`/favicon.ico`: browsers (and crawlers) ask for it whatever the page links; the icon is the SVG."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponsePermanentRedirect
from django.templatetags.static import static
from django.views.decorators.http import require_safe


@require_safe
def favicon(request: HttpRequest) -> HttpResponsePermanentRedirect:
    # Resolved per request, not at import: the static files' manifest names the hashed file.
    return HttpResponsePermanentRedirect(static("atelier/favicon.svg"))
