"""Rate limits for the pages: the API's limits (config/throttles.py) on the page views that write.

A refused request is a 429 with Retry-After and did nothing. An htmx request gets a short
message for the studio's estimate panel (app.js lets a 429 be swapped into it); a plain form
post gets the page it came from, drawn with the message.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Any

from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.utils.html import format_html

from config.throttles import RateScope, rate_limit_wait

View = Callable[..., HttpResponse]

# Where an htmx refusal is shown: the studio's estimate panel, whichever part asked.
HTMX_MESSAGE_TARGET = "#estimate"


def too_many_message(wait: int, what: str = "requests") -> str:
    return f"Too many {what} in a short time; try again in {wait} seconds."


def too_many_response(response: HttpResponse, wait: int) -> HttpResponse:
    response.status_code = 429
    response["Retry-After"] = str(wait)
    return response


def rate_limited(scope: RateScope, *, page: View | None = None) -> Callable[[View], View]:
    """Count the request against `scope`'s limits (per session and per person) before the view
    runs. Over them: 429 with Retry-After; `page(request, **kwargs)` draws the full page for a
    plain post (the messages show the refusal), else a small page saying it."""

    def decorate(view: View) -> View:
        @wraps(view)
        def limited(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
            wait = rate_limit_wait(request, scope)
            if wait is None:
                return view(request, *args, **kwargs)
            message = too_many_message(wait)
            if getattr(request, "htmx", False):
                response = HttpResponse(format_html('<p class="field-error" role="alert">{}</p>', message))
                response["HX-Retarget"] = HTMX_MESSAGE_TARGET
                response["HX-Reswap"] = "innerHTML"
                return too_many_response(response, wait)
            messages.error(request, message)
            if page is not None:
                return too_many_response(page(request, *args, **kwargs), wait)
            return too_many_response(render(request, "too_many_requests.html"), wait)

        return limited

    return decorate
