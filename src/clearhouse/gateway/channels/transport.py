"""What every adapter does with HTTP: own a client, send, turn a failure to get an answer into
``NoAnswer`` (never a guess about what the channel did), and read a JSON answer."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import quote

import httpx


class HttpAdapter:
    """The HTTP client an adapter sends with: the one given, else its own."""

    def __init__(self, client: httpx.Client | None, timeout: float, base_url: str = "") -> None:
        self._http = client or httpx.Client(base_url=base_url, timeout=timeout)

    def close_client(self) -> None:
        """Release the adapter's connections (the port's ``close`` closes a payment)."""
        self._http.close()


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


def json_object(content: bytes) -> dict[str, Any] | None:
    """The answer's JSON object, or None when the body is not one (not JSON, or a list...)."""
    try:
        data = json.loads(content)
    except ValueError:
        return None
    return data if isinstance(data, dict) else None


def segment(value: str) -> str:
    """A path segment, percent-encoded (``/`` too) so the target sent is exactly the one built
    (and, where the channel signs it, signed)."""
    return quote(value, safe="")
