"""Gunicorn's worker class for the web process: uvicorn (`-k config.web_worker.WebWorker`).

As uvicorn-worker's `UvicornWorker` (uvloop and httptools where installed), except that the
client's address is the connection's: uvicorn would otherwise take it from `X-Forwarded-For`
on connections from `--forwarded-allow-ips` (127.0.0.1 by default). Atelier reads that header
itself, TRUSTED_PROXY_COUNT hops from the right (accounts/lockout.py: client_address), and
`X-Forwarded-Proto` through SECURE_PROXY_SSL_HEADER, as it did under gunicorn's own workers.
"""

from __future__ import annotations

from typing import Any

from uvicorn_worker import UvicornWorker


class WebWorker(UvicornWorker):
    CONFIG_KWARGS: dict[str, Any] = {**UvicornWorker.CONFIG_KWARGS, "proxy_headers": False}
