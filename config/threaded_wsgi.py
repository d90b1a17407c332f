"""Django's WSGI application served from an ASGI server on a pool of threads (config/asgi.py).

Each request runs on one of WEB_THREADS threads, as under a threaded WSGI server, while the event
loop only moves bytes. What matters for speed is how often a request crosses between the loop
and its thread: each crossing waits for the other side to get the GIL (up to its 5 ms switch
interval while other threads compute). A generic adapter crosses for every message it sends (the
status, each body chunk, the end) and waits for each; here a request crosses once in each
direction when its answer is small (nearly all: pages, JSON), and once per 256 KB when it is
larger (a file, a zip), the bytes passing from the thread in one piece.

1. The request body is read on the loop up to PREREAD_BYTES; the rest (an upload) is pulled by
   the thread as the view reads it, so a view that refuses a large body stops reading it, as
   under a WSGI server.
2. The thread runs the application and reads its answer up to CHUNK_BYTES. An answer that ends
   there is closed on the same thread (Django's `request_finished`: the thread's database
   connection is checked) and handed over whole.
3. A longer answer goes out in pieces of CHUNK_BYTES, each read on a thread while the previous
   one is sent. Files are read in pieces of that size too (`wsgi.file_wrapper`), not Django's 4 KB.

Why not a2wsgi's `WSGIMiddleware` (the same idea, a thread pool): it crosses once per message
and per 4 KB of a file (no `wsgi.file_wrapper`). Measured with `BENCH_SSE_PART=requests make
bench-sse` (wrk -t2 -c16 -d10s, 2 workers x 4 threads each, best of 3 rounds taken in turn, on a
shared 2-core machine), requests per second, gthread gunicorn / this / a2wsgi 1.10.10: status
poll 183 / 204 / 163, jobs page 51 / 49 / 33, a 200 KB image 231 / 241 / 116, its first 64 KB
(Range) 266 / 322 / 205, the zip of 10 images 125 / 137 / 27.
"""

from __future__ import annotations

import asyncio
import logging
import sys
from collections.abc import Awaitable, Callable, Iterable, Iterator, MutableMapping
from concurrent.futures import ThreadPoolExecutor
from typing import IO, Any

logger = logging.getLogger(__name__)

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]
WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]

PREREAD_BYTES = 256 * 1024
CHUNK_BYTES = 256 * 1024


class ThreadedWSGI:
    def __init__(self, app: WSGIApp, *, threads: int) -> None:
        self.app = app
        self.executor = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="web")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "websocket":
            await send({"type": "websocket.close", "code": 1000})
            return
        if scope["type"] != "http":
            return
        loop = asyncio.get_running_loop()
        body = RequestBody(loop, receive)
        await body.preread()
        answer = await loop.run_in_executor(self.executor, self._respond, _environ(scope, body))
        await send({"type": "http.response.start", "status": answer.status, "headers": answer.headers})
        if answer.rest is None:
            await send({"type": "http.response.body", "body": answer.first})
            return
        try:
            await send({"type": "http.response.body", "body": answer.first, "more_body": True})
            while chunk := await loop.run_in_executor(self.executor, _gather, answer.rest):
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
            await send({"type": "http.response.body"})
        finally:
            await loop.run_in_executor(self.executor, answer.close)

    def _respond(self, environ: dict[str, Any]) -> Answer:
        answer = Answer()
        iterable = self.app(environ, answer.start_response)
        try:
            chunks = iter(iterable)
            answer.first = _gather(chunks)
            rest = _gather(chunks)
        except BaseException:
            _close(iterable)
            raise
        if not rest:
            _close(iterable)
            return answer
        answer.first += rest
        answer.rest = chunks
        answer.close = lambda: _close(iterable)
        return answer


class Answer:
    def __init__(self) -> None:
        self.status = 500
        self.headers: list[tuple[bytes, bytes]] = []
        self.first = b""
        self.rest: Iterator[bytes] | None = None
        self.close: Callable[[], None] = lambda: None

    def start_response(self, status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Callable:
        self.status = int(status.split(" ", 1)[0])
        self.headers = [(name.lower().encode("latin1"), value.encode("latin1")) for name, value in headers]
        return self._write

    def _write(self, data: bytes) -> None:
        raise NotImplementedError("the write() callable of WSGI is not offered: Django does not use it")


def _gather(chunks: Iterator[bytes]) -> bytes:
    """The next CHUNK_BYTES or so of an answer (b"" at its end)."""
    parts: list[bytes] = []
    size = 0
    for chunk in chunks:
        if chunk:
            parts.append(chunk)
            size += len(chunk)
            if size >= CHUNK_BYTES:
                break
    return b"".join(parts)


def _close(iterable: Iterable[bytes]) -> None:
    close = getattr(iterable, "close", None)
    if close is not None:
        try:
            close()
        except Exception:
            logger.exception("closing a response failed")


class FileWrapper:
    """`wsgi.file_wrapper`: a file answer read in pieces of CHUNK_BYTES (Django asks for 4 KB)."""

    def __init__(self, filelike: IO[bytes], block_size: int = CHUNK_BYTES) -> None:
        self.filelike = filelike

    def __iter__(self) -> Iterator[bytes]:
        while chunk := self.filelike.read(CHUNK_BYTES):
            yield chunk

    def close(self) -> None:
        self.filelike.close()


class RequestBody:
    """`wsgi.input`: what the loop read first, then the rest pulled from the loop on demand."""

    def __init__(self, loop: asyncio.AbstractEventLoop, receive: Receive) -> None:
        self.loop = loop
        self.receive = receive
        self.buffer = bytearray()
        self.more = True

    async def preread(self) -> None:
        while self.more and len(self.buffer) < PREREAD_BYTES:
            await self._take()

    async def _take(self) -> None:
        message = await self.receive()
        if message["type"] == "http.disconnect":
            self.more = False
            return
        self.buffer += message.get("body", b"")
        self.more = message.get("more_body", False)

    def _fill(self, size: int) -> None:
        """On the request's thread: until `size` bytes are buffered (-1: all) or the body ends."""
        while self.more and (size < 0 or len(self.buffer) < size):
            asyncio.run_coroutine_threadsafe(self._take(), self.loop).result()

    def read(self, size: int = -1) -> bytes:
        self._fill(size)
        if size < 0:
            size = len(self.buffer)
        data = bytes(self.buffer[:size])
        del self.buffer[:size]
        return data

    def readline(self, limit: int = -1) -> bytes:
        while True:
            end = self.buffer.find(b"\n")
            if end >= 0 or not self.more or 0 <= limit <= len(self.buffer):
                break
            self._fill(len(self.buffer) + 1)
        size = end + 1 if end >= 0 else len(self.buffer)
        if limit >= 0:
            size = min(size, limit)
        return self.read(size)

    def readlines(self, hint: int = -1) -> list[bytes]:
        return list(iter(self.readline, b""))

    def __iter__(self) -> Iterator[bytes]:
        return iter(self.readline, b"")


def _environ(scope: Scope, body: RequestBody) -> dict[str, Any]:
    """PEP 3333's environ from an ASGI HTTP scope."""
    root = scope.get("root_path", "")
    path: str = scope["path"]
    path_info = path[len(root) :] if root and path.startswith(root) else path
    server = scope.get("server") or ("localhost", 80)
    environ: dict[str, Any] = {
        "REQUEST_METHOD": scope["method"],
        "SCRIPT_NAME": root.encode("utf8").decode("latin1"),
        "PATH_INFO": path_info.encode("utf8").decode("latin1"),
        "QUERY_STRING": scope.get("query_string", b"").decode("latin1"),
        "SERVER_NAME": str(server[0]),
        "SERVER_PORT": str(server[1] or 0),
        "SERVER_PROTOCOL": f"HTTP/{scope.get('http_version', '1.1')}",
        "wsgi.version": (1, 0),
        "wsgi.url_scheme": scope.get("scheme", "http"),
        "wsgi.input": body,
        "wsgi.errors": sys.stderr,
        "wsgi.multithread": True,
        "wsgi.multiprocess": True,
        "wsgi.run_once": False,
        "wsgi.file_wrapper": FileWrapper,
    }
    client = scope.get("client")
    if client:
        environ["REMOTE_ADDR"], environ["REMOTE_PORT"] = client[0], str(client[1])
    for raw_name, raw_value in scope.get("headers", []):
        name = raw_name.decode("latin1").upper().replace("-", "_")
        key = name if name in ("CONTENT_TYPE", "CONTENT_LENGTH") else f"HTTP_{name}"
        value = raw_value.decode("latin1")
        environ[key] = f"{environ[key]},{value}" if key in environ else value
    return environ
