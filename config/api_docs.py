"""The API docs page (Swagger UI, from the installed sidecar), under the pages' policy.

drf-spectacular's plain Swagger view starts Swagger UI with an inline script; its split view
serves that script as a file of its own (`?script`), which script-src 'self' allows. The
template (templates/api/swagger_ui.html) leaves out the package's inline <style>. What remains
is Swagger UI's stylesheet drawing its icons as data: images, which this page alone allows.
"""

from __future__ import annotations

from csp.decorators import csp_update
from drf_spectacular.views import SpectacularSwaggerSplitView
from rest_framework.permissions import AllowAny

_DOCS_POLICY = {"img-src": ["data:"]}

api_docs_view = csp_update(_DOCS_POLICY)(
    csp_update(_DOCS_POLICY, REPORT_ONLY=True)(  # the same when the policy is sent report-only
        SpectacularSwaggerSplitView.as_view(
            url_name="schema", permission_classes=[AllowAny], template_name="api/swagger_ui.html"
        )
    )
)
