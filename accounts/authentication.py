from __future__ import annotations

import hmac
from datetime import timedelta

from django.utils import timezone
from rest_framework import authentication, exceptions
from rest_framework.request import Request

from accounts.models import ApiKey, User
from accounts.services import api_key_hash

# Writing last_used_at on every call would turn every read into a write.
LAST_USED_RESOLUTION = timedelta(minutes=1)

_DEAD_KEY_MESSAGES = {
    ApiKey.State.REVOKED: "The API key has been revoked.",
    ApiKey.State.EXPIRED: "The API key has expired.",
    # A key acts through its creator's membership: removing the member ends it for good, even
    # if they join the team again later (that is a new membership).
    ApiKey.State.MEMBER_REMOVED: "The API key's owner is no longer a member of its team.",
}


class ApiKeyAuthentication(authentication.BaseAuthentication):
    """`Authorization: Bearer atl_<prefix>_<secret>`; the request acts for the key's team."""

    keyword = "Bearer"

    def authenticate(self, request: Request) -> tuple[User, ApiKey] | None:
        header = authentication.get_authorization_header(request).decode("latin-1")
        if not header:
            return None
        scheme, _, raw_key = header.partition(" ")
        if scheme.lower() != "bearer":
            return None
        raw_key = raw_key.strip()
        parts = raw_key.split("_")
        if len(parts) < 3 or parts[0] != "atl":
            raise exceptions.AuthenticationFailed("The API key is malformed.")
        try:
            # One lookup by the unique prefix, with what the request needs: the team it acts for,
            # the person it acts as and the membership that keeps the key alive.
            api_key = ApiKey.objects.select_related("team", "created_by", "membership").get(prefix=parts[1])
        except ApiKey.DoesNotExist:
            api_key = None
        if api_key is None or not hmac.compare_digest(api_key.key_hash, api_key_hash(raw_key)):
            raise exceptions.AuthenticationFailed("The API key is not valid.")
        now = timezone.now()
        state = api_key.state_at(now)
        if state is not ApiKey.State.LIVE:
            # Only the key's holder gets here (the secret matched), so saying why costs nothing.
            raise exceptions.AuthenticationFailed(_DEAD_KEY_MESSAGES[state])
        user = api_key.created_by
        if user is None or not user.is_active:
            raise exceptions.AuthenticationFailed("The API key's owner is no longer active.")
        if api_key.last_used_at is None or now - api_key.last_used_at > LAST_USED_RESOLUTION:
            ApiKey.objects.filter(id=api_key.id).update(last_used_at=now)
        return user, api_key

    def authenticate_header(self, request: Request) -> str:
        return 'Bearer realm="api"'
