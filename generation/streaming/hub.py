"""The event hub of a web process: what wakes its open streams and what they read.

One hub per process (per event loop) serves every open stream, however many:

1. **Wake-ups.** With Redis (`event_bus.redis_url()`), one pub/sub connection subscribes to the
   pattern of every job's channel (`atelier:job-events:*`): no subscribe or unsubscribe per
   stream, no window in which a new stream's channel is not listened to yet. Messages of jobs
   nobody here watches are dropped on arrival (they are a few bytes, a few per image). A message
   `{"id": n}` marks its job's feed due; `{"preview": {...}}` goes straight to the job's streams.
2. **Reads.** One task reads the events of every due feed in one query (`events_after`) on the
   hub's thread pool, and hands each job's new events to all of its streams: a job watched by
   a hundred streams is read once per change, not a hundred times. While a read runs, new
   wake-ups gather and are read together by the next one.
3. **The safety net.** Every feed is read every EVENTS_SAFETY_POLL_SECONDS anyway (a message
   lost while Redis was away), and every EVENTS_POLL_SECONDS when there is no live subscription
   (the embedded default without Redis, or Redis unreachable): the events table is the truth.

A stream joins its job's feed, then reads the events after its own cursor itself (its
catch-up): what its feed hands it meanwhile waits in its queue, and it drops events at or
before its cursor. A job's events commit in id order (one writer at a time holds the job: the
claim, then the lease holder, then the finish), so the catch-up and the queue together miss
nothing and repeat nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, TypeVar

import redis.asyncio as aioredis
from django.conf import settings
from django.db import close_old_connections
from redis.exceptions import RedisError

from generation.services import event_bus
from generation.streaming.messages import StreamEvent, events_after

logger = logging.getLogger(__name__)

T = TypeVar("T")
# Redis is local or near: a connect that takes longer is a Redis that is away.
CONNECT_TIMEOUT_SECONDS = 2.0
RECONNECT_MAX_SECONDS = 30.0


@dataclass(frozen=True)
class Preview:
    """A preview announced on the job's channel (h4's message), passed on as it came."""

    job_id: str
    preview: Any


class Close:
    """Tells a stream to end: its client went away, or the process is shutting down."""


CLOSE = Close()
QueueItem = list[StreamEvent] | Preview | Close


@dataclass(eq=False)
class Listener:
    """One open stream of a job: what its feed hands it, in order."""

    job_id: str
    queue: asyncio.Queue[QueueItem] = field(default_factory=asyncio.Queue)


@dataclass(eq=False)
class _Feed:
    # Every event of the job up to this id was handed to the streams joined by then.
    cursor: int
    listeners: set[Listener] = field(default_factory=set)


class EventHub:
    def __init__(self, threads: int) -> None:
        self._executor = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="events")
        self._feeds: dict[str, _Feed] = {}
        self._due: set[str] = set()
        self._read_due = asyncio.Event()
        self._subscribed = False
        self._subscription_changed = asyncio.Event()
        self._closed = False
        self._tasks: list[asyncio.Task] = []

    # -- for the streams ----------------------------------------------------------------------

    def join(self, job_id: str, cursor: int) -> Listener:
        """A new stream of `job_id` that has seen the events up to `cursor`."""
        self._start()
        listener = Listener(job_id=job_id)
        if self._closed:
            listener.queue.put_nowait(CLOSE)
            return listener
        feed = self._feeds.get(job_id)
        if feed is None:
            feed = self._feeds[job_id] = _Feed(cursor=cursor)
        feed.listeners.add(listener)
        return listener

    def leave(self, listener: Listener) -> None:
        feed = self._feeds.get(listener.job_id)
        if feed is None:
            return
        feed.listeners.discard(listener)
        if not feed.listeners:
            del self._feeds[listener.job_id]

    async def run_sync(self, function: Callable[..., T], *args: Any) -> T:
        """`function(*args)` on the hub's threads, never on the event loop: the database and
        Django's synchronous request handling block."""
        return await asyncio.get_running_loop().run_in_executor(self._executor, function, *args)

    async def read_events(self, job_id: str, after: int) -> list[StreamEvent]:
        """A stream's catch-up: the job's events after `after`."""
        found = await self.run_sync(_read, {job_id: after})
        return found.get(job_id, [])

    def close_all(self) -> None:
        """Ends every open stream now (the process is shutting down: their clients reconnect to
        another with Last-Event-ID) and every stream that opens from now on."""
        self._closed = True
        for feed in self._feeds.values():
            for listener in feed.listeners:
                listener.queue.put_nowait(CLOSE)

    @property
    def open_streams(self) -> int:
        return sum(len(feed.listeners) for feed in self._feeds.values())

    # -- inside -------------------------------------------------------------------------------

    def _start(self) -> None:
        if self._tasks:
            return
        self._tasks.append(asyncio.ensure_future(self._read_loop()))
        self._tasks.append(asyncio.ensure_future(self._poll_loop()))
        url = event_bus.redis_url()
        if url:
            self._tasks.append(asyncio.ensure_future(self._subscribe_loop(url)))

    def _mark_due(self, job_ids: Iterable[str]) -> None:
        self._due.update(job_ids)
        if self._due:
            self._read_due.set()

    async def _read_loop(self) -> None:
        while True:
            await self._read_due.wait()
            self._read_due.clear()
            cursors = {job_id: self._feeds[job_id].cursor for job_id in self._due if job_id in self._feeds}
            self._due.clear()
            if not cursors:
                continue
            try:
                found = await self.run_sync(_read, cursors)
            except Exception as error:  # noqa: BLE001 - the database away: read again shortly
                logger.warning("could not read the events of %d jobs: %s", len(cursors), error)
                await asyncio.sleep(1.0)
                self._mark_due(cursors)
                continue
            for job_id, events in found.items():
                feed = self._feeds.get(job_id)
                if feed is None:
                    continue  # its last stream left meanwhile
                feed.cursor = max(feed.cursor, events[-1].id)
                for listener in feed.listeners:
                    listener.queue.put_nowait(events)

    async def _poll_loop(self) -> None:
        while True:
            interval = settings.EVENTS_SAFETY_POLL_SECONDS if self._subscribed else settings.EVENTS_POLL_SECONDS
            # A subscription that comes or goes reads every feed at once: it may have missed
            # messages, and without it the short interval applies from now on.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._subscription_changed.wait(), timeout=interval)
            self._subscription_changed.clear()
            self._mark_due(self._feeds)

    def _set_subscribed(self, subscribed: bool) -> None:
        if subscribed != self._subscribed:
            self._subscribed = subscribed
            self._subscription_changed.set()

    async def _subscribe_loop(self, url: str) -> None:
        """One subscription for the process, kept up: reconnects with a backoff, bounded waits."""
        wait = 0.5
        while True:
            client = aioredis.Redis.from_url(
                url, socket_connect_timeout=CONNECT_TIMEOUT_SECONDS, socket_keepalive=True, health_check_interval=10
            )
            pubsub = client.pubsub(ignore_subscribe_messages=True)
            try:
                await asyncio.wait_for(pubsub.psubscribe(f"{event_bus.CHANNEL_PREFIX}*"), timeout=5.0)
                self._set_subscribed(True)
                wait = 0.5
                while True:
                    message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=5.0)
                    if message is not None:
                        self._on_message(message)
            except Exception as error:  # noqa: BLE001 - whatever broke it, the subscription is made again
                if self._subscribed or not isinstance(error, (RedisError, OSError, TimeoutError)):
                    logger.warning("event streams: Redis pub/sub lost (%s); reading the table meanwhile", error)
            finally:
                self._set_subscribed(False)
                with contextlib.suppress(Exception):
                    await pubsub.aclose()
                    await client.aclose()
            await asyncio.sleep(wait)
            wait = min(wait * 2, RECONNECT_MAX_SECONDS)

    def _on_message(self, message: dict[str, Any]) -> None:
        channel = message.get("channel") or b""
        job_id = (channel.decode() if isinstance(channel, bytes) else str(channel)).removeprefix(
            event_bus.CHANNEL_PREFIX
        )
        feed = self._feeds.get(job_id)
        if feed is None:
            return  # no stream of this process watches the job
        try:
            body = json.loads(message.get("data") or b"")
        except ValueError:
            return
        if not isinstance(body, dict):
            return
        event_id = body.get("id")
        if isinstance(event_id, int) and event_id > feed.cursor:
            self._mark_due([job_id])
        if "preview" in body:
            for listener in feed.listeners:
                listener.queue.put_nowait(Preview(job_id=job_id, preview=body["preview"]))


def _read(cursors: dict[str, int]) -> dict[str, list[StreamEvent]]:
    """On a hub thread, as a request would: a connection that broke or aged is replaced."""
    close_old_connections()
    try:
        return events_after(cursors)
    finally:
        close_old_connections()


_hubs: dict[asyncio.AbstractEventLoop, EventHub] = {}


def event_hub() -> EventHub:
    """The hub of the running event loop (one per web process)."""
    loop = asyncio.get_running_loop()
    hub = _hubs.get(loop)
    if hub is None:
        hub = _hubs[loop] = EventHub(threads=settings.WEB_THREADS)
    return hub


def streams_close_all(loop: asyncio.AbstractEventLoop) -> None:
    """Ends the open streams of the hub of `loop`, if it has one (the process shuts down)."""
    hub = _hubs.get(loop)
    if hub is not None:
        hub.close_all()
