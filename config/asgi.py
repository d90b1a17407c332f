"""The web process's application (Procfile `web`: gunicorn with uvicorn workers).

Two kinds of request, two ways of serving them:

- A job's event stream (`GET /api/v1/jobs/{id}/events`) stays open for minutes while nothing
  happens. It is served on the event loop (generation/streaming/app.py), where an open stream
  costs a few kilobytes and no thread: hundreds fit in a process.
- Everything else (pages, the API, the admin, static files) is Django's WSGI application, run
  on a pool of WEB_THREADS threads per process, as a threaded WSGI server runs it
  (config/threaded_wsgi.py). Django's own ASGI handler is not used for these: it runs every
  synchronous view on one thread per process, which would serialize the requests of a process.
"""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

from django.conf import settings  # noqa: E402 - after the settings module is named
from django.core.wsgi import get_wsgi_application  # noqa: E402

from config.threaded_wsgi import ThreadedWSGI  # noqa: E402

_django = ThreadedWSGI(get_wsgi_application(), threads=settings.WEB_THREADS)

from generation.streaming.app import end_streams_on_shutdown, is_job_events_path, job_events_app  # noqa: E402

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]


async def application(scope: Scope, receive: Receive, send: Send) -> None:
    if scope["type"] == "http" and is_job_events_path(scope):
        await job_events_app(scope, receive, send)
    elif scope["type"] == "lifespan":
        await _lifespan(receive, send)
    else:
        await _django(scope, receive, send)


async def _lifespan(receive: Receive, send: Send) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            end_streams_on_shutdown()
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return
