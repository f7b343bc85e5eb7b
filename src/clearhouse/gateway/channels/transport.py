"""What every adapter does with HTTP: send, and turn a failure to get an answer into
``NoAnswer`` (never a guess about what the channel did)."""

from __future__ import annotations

from typing import Any

import httpx


class NoAnswer(Exception):
    """No usable answer: the payment or refund is UNKNOWN until a query or a notification."""

    def __init__(self, error_code: str, raw: str) -> None:
        super().__init__(raw)
        self.error_code, self.raw = error_code, raw


def request(client: httpx.Client, method: str, url: str, **kwargs: Any) -> httpx.Response:
    try:
        return client.request(method, url, **kwargs)
    except httpx.TimeoutException as exc:
        raise NoAnswer("TIMEOUT", f"{type(exc).__name__}: {exc}") from None
    except httpx.HTTPError as exc:
        raise NoAnswer("NETWORK", f"{type(exc).__name__}: {exc}") from None
