"""Times on pages are written in the person's time zone: app.js stores the browser's zone (an
IANA name such as Europe/Paris) in the `tz` cookie, and this middleware activates it for the
request. An unknown or missing zone leaves the default (UTC), which the pages name."""

from __future__ import annotations

import zoneinfo
from collections.abc import Callable
from functools import lru_cache
from urllib.parse import unquote

from django.http import HttpRequest, HttpResponse
from django.utils import timezone

COOKIE = "tz"


@lru_cache(maxsize=256)
def _zone(name: str) -> zoneinfo.ZoneInfo | None:
    if not name or len(name) > 64 or name.startswith(("/", ".")) or ".." in name:
        return None  # a zone name is never a path (ZoneInfo would try to read it as one)
    try:
        return zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        return None


class PersonTimezoneMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        zone = _zone(unquote(request.COOKIES.get(COOKIE, "")))
        if zone is None:
            return self.get_response(request)
        with timezone.override(zone):
            return self.get_response(request)
