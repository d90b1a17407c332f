from django.contrib import admin
from django.urls import include, path, re_path
from django.views.decorators.csrf import csrf_exempt
from drf_spectacular.views import SpectacularAPIView
from rest_framework.permissions import AllowAny

from accounts import pages as account_pages
from config.api_docs import api_docs_view
from config.api_errors import json_bad_request, json_not_found, json_server_error
from config.metrics_endpoint import metrics_view
from credits.views import credits_page

urlpatterns = [
    path("admin/", admin.site.urls),
    # The Prometheus scrape, for operators (METRICS_TOKEN / METRICS_ALLOWED_IPS; off without them).
    path("metrics", metrics_view, name="metrics"),
    path("api/v1/", include("generation.api.urls")),
    path("api/v1/", include("webhooks.urls")),
    path("api/schema/", SpectacularAPIView.as_view(permission_classes=[AllowAny]), name="schema"),
    path("api/docs/", api_docs_view, name="api-docs"),
    # Any other API address is a 404 in the API's shape, with DEBUG too (Django's page is HTML).
    re_path(r"^api/", csrf_exempt(json_not_found)),
    path("accounts/", include("accounts.urls")),
    path("credits/", credits_page, name="credits-page"),
    path("account/keys/", account_pages.keys_page, name="api-keys"),
    path("account/keys/<int:key_id>/revoke/", account_pages.key_revoke, name="api-key-revoke"),
    path("settings/webhooks/", include("webhooks.page_urls")),
    path("", include("generation.pages.urls")),
]


def handler400(request, exception=None):  # type: ignore[no-untyped-def]
    if request.path.startswith("/api/"):
        return json_bad_request(request, exception)
    from django.views.defaults import bad_request

    return bad_request(request, exception)


def handler404(request, exception=None):  # type: ignore[no-untyped-def]
    if request.path.startswith("/api/"):
        return json_not_found(request, exception)
    from django.views.defaults import page_not_found

    return page_not_found(request, exception)


def handler500(request):  # type: ignore[no-untyped-def]
    if request.path.startswith("/api/"):
        return json_server_error(request)
    from django.views.defaults import server_error

    return server_error(request)
