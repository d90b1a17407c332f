from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView
from rest_framework.permissions import AllowAny

from config.api_errors import json_not_found, json_server_error
from credits.views import credits_page

urlpatterns = [
    path("admin/", admin.site.urls),
    path("api/v1/", include("generation.api.urls")),
    path("api/schema/", SpectacularAPIView.as_view(permission_classes=[AllowAny]), name="schema"),
    path(
        "api/docs/",
        SpectacularSwaggerView.as_view(url_name="schema", permission_classes=[AllowAny]),
        name="api-docs",
    ),
    path("accounts/", include("accounts.urls")),
    path("credits/", credits_page, name="credits-page"),
    path("", include("generation.pages.urls")),
]


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
