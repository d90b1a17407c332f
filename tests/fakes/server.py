"""A scripted HTTP server on localhost: what every provider fake is built on.

A fake records every request it receives (method, path, headers, body) and answers from a
script: a test queues `Scripted` answers for a path (a 429 with Retry-After, a hang, an error
body) and the fake's own `default_answer` serves the rest, in the provider's real shape.
The server runs in threads of the test process, or as a process of its own
(`python -m tests.fakes.<module> --port N`) for the worker processes to reach.
"""

from __future__ import annotations

import json
import threading
import time
from collections import defaultdict, deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class Recorded:
    method: str
    path: str  # without the query string
    query: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body or b"null")


@dataclass
class Streamed:
    """A body sent piece by piece with chunked transfer encoding, `pause_seconds` between pieces,
    as a server streams what it makes while it makes it (server-sent events, for one)."""

    chunks: list[bytes]
    pause_seconds: float = 0.0


@dataclass
class Answer:
    status: int = 200
    body: Any = None  # a dict/list is sent as JSON; bytes as they are; a Streamed piece by piece
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class Scripted:
    """One scripted answer for a path: `hang_seconds` first (a wedged connection), then `answer`."""

    answer: Answer
    hang_seconds: float = 0.0


class FakeServer:
    """Subclasses implement `default_answer(request)`."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self.requests: list[Recorded] = []
        self._script: dict[str, deque[Scripted]] = defaultdict(deque)
        self._lock = threading.Lock()
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base's name
                pass

            def _handle(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                path, _, query = self.path.partition("?")
                recorded = Recorded(self.command, path, query, {k.lower(): v for k, v in self.headers.items()}, body)
                answer = fake._answer(recorded)
                if isinstance(answer.body, Streamed):
                    self._stream(answer, answer.body)
                    return
                payload = answer.body if isinstance(answer.body, bytes) else json.dumps(answer.body).encode()
                try:
                    self.send_response(answer.status)
                    headers = {"Content-Type": "application/json", **answer.headers}
                    for name, value in headers.items():
                        self.send_header(name, value)
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    self.wfile.write(payload)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up (its timeout): that is what a hang tests

            def _stream(self, answer: Answer, body: Streamed) -> None:
                try:
                    self.send_response(answer.status)
                    for name, value in {"Content-Type": "text/event-stream", **answer.headers}.items():
                        self.send_header(name, value)
                    self.send_header("Transfer-Encoding", "chunked")
                    self.end_headers()
                    for position, chunk in enumerate(body.chunks):
                        if position and body.pause_seconds:
                            time.sleep(body.pause_seconds)
                        self.wfile.write(f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n")
                        self.wfile.flush()
                    self.wfile.write(b"0\r\n\r\n")
                    self.wfile.flush()
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client stopped reading (it had what it wanted, or gave up)

            do_GET = do_POST = do_DELETE = _handle  # noqa: N815 - http.server's names

        self.httpd = ThreadingHTTPServer((host, port), Handler)
        self.httpd.daemon_threads = True
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host, port = self.httpd.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> FakeServer:
        self._thread = threading.Thread(target=self.httpd.serve_forever, name="fake-server", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def script(self, path_suffix: str, *answers: Scripted) -> None:
        """Answer the next requests whose path ends with `path_suffix` with `answers`, in order."""
        with self._lock:
            self._script[path_suffix].extend(answers)

    def received(self, path_suffix: str = "") -> list[Recorded]:
        with self._lock:
            return [r for r in self.requests if r.path.endswith(path_suffix)]

    def _answer(self, request: Recorded) -> Answer:
        with self._lock:
            self.requests.append(request)
            scripted = next(
                (queue.popleft() for suffix, queue in self._script.items() if queue and request.path.endswith(suffix)),
                None,
            )
        if scripted is not None:
            if scripted.hang_seconds:
                time.sleep(scripted.hang_seconds)
            return scripted.answer
        return self.default_answer(request)

    def default_answer(self, request: Recorded) -> Answer:
        raise NotImplementedError
