"""What a browser or a proxy may keep of a signed-in person's pages and files: nothing.

A page drawn for someone shows their team's prompts, images and balance. `private` keeps shared
caches (a proxy, a CDN) from storing it; `no-store` keeps the browser from writing it to disk,
where it would outlive the session on a shared computer and come back with the Back button
after logging out. Static files are answered by WhiteNoise before any of this runs and keep
their long, immutable caching.
"""

from __future__ import annotations

from collections.abc import Callable

from django.http import HttpRequest, HttpResponseBase
from django.utils.cache import patch_cache_control

PRIVATE = "private, no-store"


def never_store(response: HttpResponseBase) -> HttpResponseBase:
    """Marks a response that must not be kept anywhere (a private image, clip or download)."""
    patch_cache_control(response, private=True, no_store=True)
    return response


class PrivateCacheControlMiddleware:
    """`Cache-Control: private, no-store` on every response to a signed-in person.

    A view that chose its own caching keeps it (Django's `never_cache` is stricter still). The
    API's key holders count as signed in: DRF sets `request.user` when it authenticates a key,
    before the response comes back through here.
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponseBase]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponseBase:
        response = self.get_response(request)
        user = getattr(request, "user", None)
        if user is not None and user.is_authenticated and "Cache-Control" not in response:
            response["Cache-Control"] = PRIVATE
        return response
