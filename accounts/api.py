"""/api/v1/keys: the team's API keys, listed, created (the key shown once) and revoked.

Managed from a signed-in browser session only: a key that could make keys would let whoever
leaked it keep access after it is revoked (they would have minted another first).
"""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import extend_schema
from rest_framework import generics, serializers, status
from rest_framework.exceptions import NotFound
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.models import ApiKey, User
from accounts.permissions import IsTeamMember, SessionOnly, request_team
from accounts.quotas import QuotaExceeded
from accounts.selectors import api_key_for_team, api_key_list_for_team
from accounts.services import (
    API_KEY_NAME_MAX,
    ApiKeyPermissionDenied,
    api_key_create,
    api_key_revoke,
)
from config.pagination import BoundedLimitOffsetPagination
from config.schema import error_responses
from config.serializers import StrictSerializer

_SESSION_ONLY = (
    "Needs a signed-in browser session (with its CSRF token); a request made with an API key is "
    "refused with 403, so a leaked key cannot mint more keys."
)


# Only the session is offered in the schema. drf-spectacular's hint says a list of names; it
# takes OpenAPI security requirements, which is what it writes out.
_SESSION_AUTH: Any = [{"cookieAuth": []}]
# config/schema.py adds the errors every authenticated view can give (400, 401, 403, 404, ...);
# these are the ones key management adds to them.
_KEY_REFUSED = (ApiKeyPermissionDenied, "the request was made with an API key: keys are managed from a session")


class ApiKeySerializer(serializers.ModelSerializer):
    prefix = serializers.CharField(read_only=True, help_text="The key starts with `atl_<prefix>_`.")
    created_by = serializers.EmailField(source="created_by.email", read_only=True, allow_null=True)
    state = serializers.ChoiceField(choices=ApiKey.State.choices, read_only=True)

    class Meta:
        model = ApiKey
        fields = [
            "id", "name", "prefix", "created_by", "created_at", "last_used_at", "expires_at", "revoked_at", "state",
        ]  # fmt: skip
        read_only_fields = fields


class ApiKeyCreatedSerializer(ApiKeySerializer):
    key = serializers.CharField(read_only=True, help_text="The key itself: shown in this answer only, never again.")

    class Meta(ApiKeySerializer.Meta):
        fields = [*ApiKeySerializer.Meta.fields, "key"]
        read_only_fields = fields


class ApiKeyCreateSerializer(StrictSerializer):
    """Strict: a misspelt `expire_at` must not silently make a key that never expires, nor a
    number pass for a name."""

    name = serializers.CharField(max_length=API_KEY_NAME_MAX)
    expires_at = serializers.DateTimeField(required=False, allow_null=True, help_text="In the future; none: never.")


class ApiKeyListCreateView(generics.ListAPIView):
    permission_classes = [IsTeamMember, SessionOnly]
    serializer_class = ApiKeySerializer
    pagination_class = BoundedLimitOffsetPagination

    def get_queryset(self) -> Any:
        return api_key_list_for_team(team=request_team(self.request))

    @extend_schema(
        summary="The team's API keys, newest first (never their secrets)",
        description=_SESSION_ONLY,
        auth=_SESSION_AUTH,
        responses={200: ApiKeySerializer(many=True), **error_responses(_KEY_REFUSED)},
    )
    def get(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        return super().get(request, *args, **kwargs)

    @extend_schema(
        summary="Make an API key for yourself in the team; the key is in this answer only",
        description=_SESSION_ONLY,
        auth=_SESSION_AUTH,
        request=ApiKeyCreateSerializer,
        responses={
            201: ApiKeyCreatedSerializer,
            **error_responses(_KEY_REFUSED, (QuotaExceeded, "the team holds API_KEYS_PER_TEAM live keys")),
        },
    )
    def post(self, request: Request) -> Response:
        body = ApiKeyCreateSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        issued = api_key_create(
            team=request_team(request),
            created_by=_person(request),
            name=body.validated_data["name"],
            expires_at=body.validated_data.get("expires_at"),
        )
        data = ApiKeySerializer(issued.api_key).data | {"key": issued.raw_key}
        return Response(data, status=status.HTTP_201_CREATED)


class ApiKeyDetailView(APIView):
    permission_classes = [IsTeamMember, SessionOnly]

    @extend_schema(
        summary="Revoke a key for good (yours; any of the team's if you own the team)",
        description=f"Revoking a revoked key changes nothing and is a 204 too. {_SESSION_ONLY}",
        auth=_SESSION_AUTH,
        request=None,
        responses={
            204: None,
            **error_responses(
                _KEY_REFUSED, (ApiKeyPermissionDenied, "another member's key, and you do not own the team")
            ),
        },
    )
    def delete(self, request: Request, key_id: int) -> Response:
        api_key = api_key_for_team(team=request_team(request), key_id=key_id)
        if api_key is None:
            raise NotFound("No such API key in this team.")  # another team's key is not confirmed
        api_key_revoke(api_key=api_key, by=_person(request))
        return Response(status=status.HTTP_204_NO_CONTENT)


def _person(request: Request) -> User:
    user = request.user
    assert isinstance(user, User), "IsTeamMember lets only signed-in people in"
    return user
