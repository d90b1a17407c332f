"""A fake OpenAI Images API for the benchmarks: every generation answers after a fixed latency L
with a pre-made image, so a benchmark measures Atelier's path and not an image being drawn.

Run it as a process of its own, so its work is not counted in (or slowed by) the benchmark's:

    .venv/bin/python -m bench.fake_openai --port 8123

and point the real `openai` provider at it (OPENAI_BASE_URL=http://127.0.0.1:8123/v1). It holds
as many delayed calls at once as the clients open (one daemon thread per connection, mostly
asleep; the listen backlog is large, so a burst of 100 connections is not dropped and retried a
second later). The answers are encoded once per image, not per call.

Control, from the benchmark: `POST /_bench/config` with `{"latency_seconds": 2.0, "image":
"small" | "noise5mb"}`; `GET /_bench/stats` gives the calls answered and the most in flight at
once since the last `POST /_bench/stats/reset`.
"""

from __future__ import annotations

import argparse
import base64
import io
import json
import os
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from PIL import Image

GENERATIONS = "/v1/images/generations"


def small_png() -> bytes:
    """1024 x 1024 in one colour, as the tests' fake draws it: a real PNG of a few KB."""
    buffer = io.BytesIO()
    Image.new("RGB", (1024, 1024), (90, 140, 210)).save(buffer, format="PNG")
    return buffer.getvalue()


def noise_png(megabytes: float = 5.0) -> bytes:
    """Random pixels, which PNG cannot compress: a file of about `megabytes` MB."""
    side = int((megabytes * 1024 * 1024 / 3) ** 0.5)
    image = Image.frombytes("RGB", (side, side), os.urandom(side * side * 3))
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", compress_level=1)
    return buffer.getvalue()


def answer_body(png: bytes) -> bytes:
    """A 200 body of the Images API for one image, as GPT image models answer."""
    with Image.open(io.BytesIO(png)) as opened:
        size = f"{opened.width}x{opened.height}"
    return json.dumps(
        {
            "created": int(time.time()),
            "background": "opaque",
            "data": [{"b64_json": base64.b64encode(png).decode()}],
            "output_format": "png",
            "quality": "medium",
            "size": size,
            "usage": {
                "input_tokens": 50,
                "input_tokens_details": {"image_tokens": 0, "text_tokens": 50},
                "output_tokens": 1056,
                "output_tokens_details": {"image_tokens": 1056, "text_tokens": 0},
                "total_tokens": 1106,
            },
        }
    ).encode()


class FakeOpenAIServer(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 1024  # the listen backlog: a burst of connections must not be dropped
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int]) -> None:
        super().__init__(address, _Handler)
        self.lock = threading.Lock()
        self.latency_seconds = 0.0
        self.images = {"small": small_png()}
        self.bodies = {"small": answer_body(self.images["small"])}
        self.image = "small"
        self.answered = 0
        self.in_flight = 0
        self.max_in_flight = 0

    def configure(self, settings: dict[str, Any]) -> dict[str, Any]:
        with self.lock:
            if "latency_seconds" in settings:
                self.latency_seconds = float(settings["latency_seconds"])
            if "image" in settings:
                name = str(settings["image"])
                if name not in self.bodies:
                    if name != "noise5mb":
                        raise ValueError(f"unknown image {name!r}")
                    self.images[name] = noise_png(5.0)
                    self.bodies[name] = answer_body(self.images[name])
                self.image = name
            return self._describe()

    def _describe(self) -> dict[str, Any]:
        return {
            "latency_seconds": self.latency_seconds,
            "image": self.image,
            "image_bytes": len(self.images[self.image]),
            "body_bytes": len(self.bodies[self.image]),
        }

    def stats(self, reset: bool = False) -> dict[str, Any]:
        with self.lock:
            stats = {"answered": self.answered, "max_in_flight": self.max_in_flight, **self._describe()}
            if reset:
                self.answered, self.max_in_flight = 0, self.in_flight
            return stats


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive: the SDK's pool reuses its connections
    # TCP_NODELAY, as real API servers set it: without it the answer's last segment waits for the
    # client's delayed ACK of the headers, some 40 ms a call that would be charged to Atelier.
    disable_nagle_algorithm = True
    server: FakeOpenAIServer

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base's name
        pass

    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        self._drain()
        if self.path == "/_bench/stats":
            self._send(200, json.dumps(self.server.stats()).encode())
        else:
            self._send(404, b'{"error": {"message": "not found", "type": "invalid_request_error"}}')

    def do_POST(self) -> None:  # noqa: N802 - http.server's name
        body = self._drain()
        server = self.server
        if self.path == "/_bench/config":
            try:
                self._send(200, json.dumps(server.configure(json.loads(body or b"{}"))).encode())
            except ValueError as error:
                self._send(400, json.dumps({"error": str(error)}).encode())
            return
        if self.path == "/_bench/stats/reset":
            self._send(200, json.dumps(server.stats(reset=True)).encode())
            return
        if self.path.partition("?")[0] != GENERATIONS:
            self._send(404, b'{"error": {"message": "not found", "type": "invalid_request_error"}}')
            return
        with server.lock:
            latency, answer = server.latency_seconds, server.bodies[server.image]
            server.in_flight += 1
            server.max_in_flight = max(server.max_in_flight, server.in_flight)
        try:
            if latency > 0:
                time.sleep(latency)
            self._send(200, answer)
        finally:
            with server.lock:
                server.in_flight -= 1
                server.answered += 1

    def _drain(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _send(self, status: int, payload: bytes) -> None:
        try:
            self.send_response_only(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            # Headers and body in one write (http.server would send them in two).
            self.wfile.write(b"".join(self._headers_buffer) + b"\r\n" + payload)
            self._headers_buffer = []
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up (its timeout, or a canceled job's abandoned call)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--latency", type=float, default=0.0)
    args = parser.parse_args()
    server = FakeOpenAIServer(("127.0.0.1", args.port))
    server.configure({"latency_seconds": args.latency})
    print(f"fake OpenAI listening on 127.0.0.1:{args.port}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
