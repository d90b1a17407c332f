"""The web process's application with a2wsgi's `WSGIMiddleware` in place of config/threaded_wsgi.py
(bench/sse_streams.py compares the two): the same routing, the same WEB_THREADS threads."""

from __future__ import annotations

from a2wsgi import WSGIMiddleware
from django.conf import settings
from django.core.wsgi import get_wsgi_application

import config.asgi

config.asgi._django = WSGIMiddleware(get_wsgi_application(), workers=settings.WEB_THREADS)  # type: ignore[assignment]
application = config.asgi.application
