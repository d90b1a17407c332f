"""The webhooks settings page's routes, mounted under /settings/webhooks/ (config/urls.py)."""

from django.urls import path

from webhooks import pages

urlpatterns = [
    path("", pages.webhooks_page, name="webhooks"),
    path("<uuid:endpoint_id>/", pages.endpoint_page, name="webhook-page"),
    path("<uuid:endpoint_id>/enable/", pages.endpoint_enable_view, name="webhook-enable"),
    path("<uuid:endpoint_id>/disable/", pages.endpoint_disable_view, name="webhook-disable"),
    path("<uuid:endpoint_id>/delete/", pages.endpoint_delete_view, name="webhook-delete"),
    path(
        "<uuid:endpoint_id>/deliveries/<int:delivery_id>/resend/",
        pages.delivery_resend_view,
        name="webhook-delivery-resend",
    ),
]
