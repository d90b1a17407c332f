"""One-time form tokens: every drawn form that spends credits (Generate, More like this) carries
a fresh token, which becomes the submit's idempotency key, so pressing it twice (a double click,
a resent form) starts and charges one job."""

from __future__ import annotations

import uuid

from django.http import HttpRequest

FIELD = "submit_token"


def new_submit_token() -> str:
    return uuid.uuid4().hex


def idempotency_key_of(request: HttpRequest, *, scope: str) -> str:
    """The idempotency key of the posted form's token (none for a missing or malformed token)."""
    token = request.POST.get(FIELD, "")
    return f"{scope}:{token}" if len(token) == 32 and token.isalnum() else ""
