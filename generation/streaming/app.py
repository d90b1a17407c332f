"""The ASGI app of `GET /api/v1/jobs/{id}/events` (config/asgi.py routes the path here).

1. The request goes through Django as any other (middleware, authentication by session or
   API key, throttles, the team's job or a 404, the JSON error shape): `JobEventsView`, run by
   Django's synchronous handler on the hub's small thread pool, so the event loop never waits
   on the database. Its answer is either an error, sent as it is, or a `JobEventStream`: the
   retry hint, the job's state and its events after `Last-Event-ID`.
2. The live part holds no thread: the stream joins its job's feed in the process's hub, reads
   what happened since the view's read (its catch-up), then sends each event the hub hands it.
   It ends after the job's terminal event, when the client goes away, after
   EVENTS_STREAM_MAX_SECONDS (the client reconnects with Last-Event-ID), or when the process
   shuts down. A comment line every EVENTS_HEARTBEAT_SECONDS of silence keeps proxies from
   closing it.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import random
import signal
import threading
from collections.abc import Awaitable, Callable, MutableMapping
from functools import cache
from typing import Any

from django.conf import settings
from django.core import signals
from django.core.handlers.asgi import ASGIRequest
from django.core.handlers.asgi import get_script_prefix as asgi_script_prefix
from django.core.handlers.base import BaseHandler
from django.http import HttpResponseBase
from django.urls import Resolver404, resolve, set_script_prefix

from generation.streaming.hub import CLOSE, EventHub, Listener, Preview, event_hub, streams_close_all
from generation.streaming.messages import JobEventStream, StreamEvent, comment, preview_message

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]

EVENTS_VIEW_NAME = "api:job-events"
# A client that takes nothing for this long (its connection stalled) is dropped.
SEND_TIMEOUT_SECONDS = 30.0


def is_job_events_path(scope: Scope) -> bool:
    """Whether the URLconf sends this path to the events view (only paths ending in /events
    are looked up, so other requests pay nothing)."""
    path: str = scope.get("path", "")
    if not path.endswith("/events"):
        return False
    root = scope.get("root_path", "")
    try:
        match = resolve(path[len(root) :] if root and path.startswith(root) else path)
    except Resolver404:
        return False
    return match.view_name == EVENTS_VIEW_NAME


async def job_events_app(scope: Scope, receive: Receive, send: Send) -> None:
    hub = event_hub()
    response, headers, body = await hub.run_sync(_django_response, scope)
    live = isinstance(response, JobEventStream) and not response.finished and scope["method"] != "HEAD"
    await send({"type": "http.response.start", "status": response.status_code, "headers": headers})
    await send({"type": "http.response.body", "body": body, "more_body": live})
    if live:
        assert isinstance(response, JobEventStream)
        await _live(hub, response, receive, send)


@cache
def _handler() -> BaseHandler:
    handler = BaseHandler()
    handler.load_middleware()  # the synchronous chain, as the WSGI handler has it
    return handler


def _django_response(scope: Scope) -> tuple[HttpResponseBase, list[tuple[bytes, bytes]], bytes]:
    """What Django answers, on a hub thread, with the request signals a WSGI server sends (the
    thread's database connection is checked before and released after, as for any request).
    The body is read here: an error's JSON, or a stream's opening."""
    set_script_prefix(asgi_script_prefix(scope))
    signals.request_started.send(sender=JobEventStream, scope=scope)
    # The view takes no body: a request that sends one is answered (405) without it.
    response = _handler().get_response(ASGIRequest(scope, io.BytesIO()))
    try:
        body = response.opening if isinstance(response, JobEventStream) else _content(response)
    finally:
        response.close()  # request_finished
    return response, _headers(response), body


def _content(response: HttpResponseBase) -> bytes:
    if response.streaming:
        return b"".join(response.streaming_content)  # type: ignore[attr-defined, arg-type]
    return response.content  # type: ignore[attr-defined, no-any-return]


def _headers(response: HttpResponseBase) -> list[tuple[bytes, bytes]]:
    """As Django's ASGI handler sends them: the header fields, then one Set-Cookie per cookie."""
    headers = [(name.encode("ascii"), value.encode("latin1")) for name, value in response.items()]
    headers += [
        (b"Set-Cookie", cookie.output(header="").encode("ascii").strip()) for cookie in response.cookies.values()
    ]
    return headers


async def _live(hub: EventHub, stream: JobEventStream, receive: Receive, send: Send) -> None:
    listener = hub.join(stream.job_id, stream.cursor)
    watcher = asyncio.ensure_future(_close_on_disconnect(receive, listener))
    loop = asyncio.get_running_loop()
    # Streams opened together (a deploy's reconnects) should not all end together.
    deadline = loop.time() + settings.EVENTS_STREAM_MAX_SECONDS * random.uniform(0.9, 1.0)
    cursor = stream.cursor

    async def write(chunk: bytes) -> None:
        async with asyncio.timeout(SEND_TIMEOUT_SECONDS):
            await send({"type": "http.response.body", "body": chunk, "more_body": True})

    async def write_events(events: list[StreamEvent]) -> bool:
        """Sends those after the cursor; True once the job's end went out."""
        nonlocal cursor
        fresh = [event for event in events if event.id > cursor]
        if fresh:
            cursor = fresh[-1].id
            await write(b"".join(event.render(stream.origin) for event in fresh))
        return any(event.terminal for event in fresh)

    try:
        if await write_events(await hub.read_events(stream.job_id, cursor)):
            return
        while True:
            now = loop.time()
            if now >= deadline:
                return
            try:
                async with asyncio.timeout(min(settings.EVENTS_HEARTBEAT_SECONDS, deadline - now)):
                    item = await listener.queue.get()
            except TimeoutError:
                if loop.time() < deadline:
                    await write(comment("keep-alive"))
                continue
            if item is CLOSE:
                return
            if isinstance(item, Preview):
                message = preview_message(item.job_id, item.preview, stream.origin)
                if message is not None:
                    await write(message)
            elif isinstance(item, list) and await write_events(item):
                return
    except TimeoutError:
        return  # the client stopped reading
    finally:
        hub.leave(listener)
        watcher.cancel()
        with contextlib.suppress(Exception):  # a client gone or stalled: the server drops the connection
            async with asyncio.timeout(1.0):
                await send({"type": "http.response.body", "body": b"", "more_body": False})


async def _close_on_disconnect(receive: Receive, listener: Listener) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass
    listener.queue.put_nowait(CLOSE)


def end_streams_on_shutdown() -> None:
    """On SIGTERM or SIGINT (a deploy, Ctrl-C), every open stream ends at once, and its client
    reconnects with Last-Event-ID to a process that stays; the server's own handler runs next.
    Without this the server would wait for streams that never end by themselves.

    Called at the ASGI lifespan's startup, when the server has put its handlers in place."""
    if threading.current_thread() is not threading.main_thread():
        return  # signals are the main thread's only; a server running elsewhere handles them
    loop = asyncio.get_running_loop()
    for number in (signal.SIGTERM, signal.SIGINT):
        previous = signal.getsignal(number)

        def handler(signum: int, frame: Any, previous: Any = previous) -> None:
            loop.call_soon_threadsafe(streams_close_all, loop)
            if callable(previous):
                previous(signum, frame)
            elif previous != signal.SIG_IGN:
                signal.signal(signum, signal.SIG_DFL)
                signal.raise_signal(signum)

        signal.signal(number, handler)
