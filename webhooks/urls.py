"""The webhook API's routes, mounted under /api/v1/ (config/urls.py)."""

from django.urls import path

from webhooks import api

app_name = "webhooks_api"

urlpatterns = [
    path("webhooks", api.WebhookListCreateView.as_view(), name="webhook-list"),
    path("webhooks/<uuid:endpoint_id>", api.WebhookDetailView.as_view(), name="webhook-detail"),
    path("webhooks/<uuid:endpoint_id>/deliveries", api.WebhookDeliveryListView.as_view(), name="delivery-list"),
    path(
        "webhooks/<uuid:endpoint_id>/deliveries/<int:delivery_id>/resend",
        api.WebhookDeliveryResendView.as_view(),
        name="delivery-resend",
    ),
]
