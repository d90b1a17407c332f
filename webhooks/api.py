"""/api/v1/webhooks: the team's webhook endpoints (the secret shown once, at creation), their
delivery logs and "send again". Thin views over webhooks/endpoints.py and webhooks/selectors.py.

Any member of the team may manage its endpoints, with a session or an API key: an endpoint
receives what the team's jobs do, which whoever holds a key can read through the API anyway.
Adding an endpoint, changing one and "send again" count against RATE_LIMIT_WEBHOOK (a URL is
resolved, or POSTed to), the rest against RATE_LIMIT_API.
"""

from __future__ import annotations

from uuid import UUID

from drf_spectacular.utils import extend_schema
from rest_framework import status
from rest_framework.exceptions import NotFound
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.models import User
from accounts.permissions import request_team
from accounts.quotas import QuotaExceeded
from config.pagination import BoundedLimitOffsetPagination
from config.schema import error_responses
from config.throttles import RateScope
from webhooks.endpoints import (
    EndpointDisabled,
    endpoint_create,
    endpoint_delete,
    endpoint_delivery_resend,
    endpoint_update,
)
from webhooks.models import WebhookDelivery, WebhookEndpoint
from webhooks.selectors import (
    delivery_for_endpoint,
    delivery_log_for_endpoint,
    endpoint_for_team,
    endpoint_list_for_team,
)
from webhooks.serializers import (
    WebhookDeliverySerializer,
    WebhookEndpointCreatedSerializer,
    WebhookEndpointCreateSerializer,
    WebhookEndpointSerializer,
    WebhookEndpointUpdateSerializer,
)

_SIGNING = (
    "Each delivery is a POST in the Standard Webhooks form: `webhook-id` (one per event), `webhook-timestamp` "
    "and `webhook-signature` (`v1,` and the base64 HMAC-SHA256 of `<id>.<timestamp>.<body>` with the secret). "
    "The body is `{type, timestamp, data}`, `data` being the job as `GET /api/v1/jobs/{id}` shows it. Answers "
    "other than 2xx are retried (timeouts, connection errors, 5xx and 429) for about a day, or not at all "
    "(other 4xx); an endpoint whose deliveries keep failing for a day is disabled automatically."
)


def _endpoint(request: Request, endpoint_id: UUID) -> WebhookEndpoint:
    endpoint = endpoint_for_team(team=request_team(request), endpoint_id=endpoint_id)
    if endpoint is None:
        raise NotFound("No such webhook endpoint in this team.")  # another team's is not confirmed
    return endpoint


def _delivery(endpoint: WebhookEndpoint, delivery_id: int) -> WebhookDelivery:
    delivery = delivery_for_endpoint(endpoint=endpoint, delivery_id=delivery_id)
    if delivery is None:
        raise NotFound("No such delivery of this webhook endpoint.")
    return delivery


def _person(request: Request) -> User:
    user = request.user
    assert isinstance(user, User), "IsTeamMember lets only signed-in people in"
    return user


class WebhookListCreateView(APIView):
    pagination_class = BoundedLimitOffsetPagination  # GET; the schema shows the page's envelope
    throttle_scopes = {"POST": RateScope.WEBHOOK}  # a new URL is resolved; the list is a read

    @extend_schema(
        summary="The team's webhook endpoints, oldest first (never their secrets)",
        responses={200: WebhookEndpointSerializer(many=True)},
    )
    def get(self, request: Request) -> Response:
        paginator = self.pagination_class()
        page = paginator.paginate_queryset(endpoint_list_for_team(team=request_team(request)), request, view=self)
        return paginator.get_paginated_response(WebhookEndpointSerializer(page, many=True).data)

    @extend_schema(
        summary="Add a webhook endpoint; its signing secret is in this answer only",
        description=f"The URL is refused (400 naming `url`) when it is not http(s), carries a user name, or its "
        f"host does not resolve or resolves to a private, loopback or link-local address. {_SIGNING}",
        request=WebhookEndpointCreateSerializer,
        responses={
            201: WebhookEndpointCreatedSerializer,
            **error_responses((QuotaExceeded, "the team has QUOTA_WEBHOOK_ENDPOINTS endpoints")),
        },
    )
    def post(self, request: Request) -> Response:
        body = WebhookEndpointCreateSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        endpoint, secret = endpoint_create(
            team=request_team(request),
            user=_person(request),
            url=body.validated_data["url"],
            events=body.validated_data.get("events"),
            description=body.validated_data.get("description", ""),
        )
        data = WebhookEndpointSerializer(endpoint).data | {"secret": secret}
        return Response(data, status=status.HTTP_201_CREATED)


class WebhookDetailView(APIView):
    throttle_scopes = {"PATCH": RateScope.WEBHOOK}  # a changed URL is resolved again

    @extend_schema(summary="A webhook endpoint (never its secret)", responses={200: WebhookEndpointSerializer})
    def get(self, request: Request, endpoint_id: UUID) -> Response:
        return Response(WebhookEndpointSerializer(_endpoint(request, endpoint_id)).data)

    @extend_schema(
        summary="Change a webhook endpoint: its URL, events, description, or enable or disable it",
        description="Only the fields given change. The URL is checked as at creation (400 naming `url`).",
        request=WebhookEndpointUpdateSerializer,
        responses={200: WebhookEndpointSerializer},
    )
    def patch(self, request: Request, endpoint_id: UUID) -> Response:
        endpoint = _endpoint(request, endpoint_id)
        body = WebhookEndpointUpdateSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        endpoint = endpoint_update(endpoint=endpoint, **body.validated_data)
        return Response(WebhookEndpointSerializer(endpoint).data)

    @extend_schema(
        summary="Delete a webhook endpoint and its delivery log; nothing more is sent to it",
        request=None,
        responses={204: None},
    )
    def delete(self, request: Request, endpoint_id: UUID) -> Response:
        endpoint_delete(endpoint=_endpoint(request, endpoint_id))
        return Response(status=status.HTTP_204_NO_CONTENT)


class WebhookDeliveryListView(APIView):
    pagination_class = BoundedLimitOffsetPagination

    @extend_schema(
        summary="The endpoint's delivery log, newest first, each delivery with its attempts",
        responses={200: WebhookDeliverySerializer(many=True)},
    )
    def get(self, request: Request, endpoint_id: UUID) -> Response:
        endpoint = _endpoint(request, endpoint_id)
        paginator = self.pagination_class()
        page = paginator.paginate_queryset(delivery_log_for_endpoint(endpoint=endpoint), request, view=self)
        return paginator.get_paginated_response(WebhookDeliverySerializer(page, many=True).data)


class WebhookDeliveryResendView(APIView):
    throttle_scopes = {"POST": RateScope.WEBHOOK}  # each one is a POST to the team's URL

    @extend_schema(
        summary="Send a delivery again (202): the same event and webhook-id, a new round of attempts",
        description="A delivery being attempted right now is left to that attempt.",
        request=None,
        responses={
            202: WebhookDeliverySerializer,
            **error_responses((EndpointDisabled, "the endpoint is disabled: enable it first")),
        },
    )
    def post(self, request: Request, endpoint_id: UUID, delivery_id: int) -> Response:
        endpoint = _endpoint(request, endpoint_id)
        delivery = endpoint_delivery_resend(endpoint=endpoint, delivery=_delivery(endpoint, delivery_id))
        return Response(
            WebhookDeliverySerializer(_delivery(endpoint, delivery.id)).data, status=status.HTTP_202_ACCEPTED
        )
