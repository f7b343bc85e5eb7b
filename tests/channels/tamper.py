"""A man in the middle for the channel tests: an HTTP transport that rewrites answers."""

from __future__ import annotations

import httpx


class Tamper(httpx.BaseTransport):
    """Forwards to the real server and rewrites the answer's body."""

    def __init__(self, old: bytes, new: bytes) -> None:
        self._inner = httpx.HTTPTransport()
        self._old, self._new = old, new

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        response = self._inner.handle_request(request)
        body = response.read().replace(self._old, self._new)
        return httpx.Response(response.status_code, content=body)

    def close(self) -> None:
        self._inner.close()
