"""A small signing client for the merchant API: what the demo, the bench and the tests use, and
a reference for merchants writing their own."""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Callable
from typing import Any

import httpx

from clearhouse.api import signing


class MerchantClient:
    def __init__(
        self,
        http: httpx.Client,
        key_id: str,
        secret: str,
        now: Callable[[], float] = time.time,
    ) -> None:
        self.http = http
        self.key_id = key_id
        self.secret = secret.encode()
        self.now = now

    def headers(self, method: str, path: str, body: bytes) -> dict[str, str]:
        timestamp = str(int(self.now()))
        nonce = secrets.token_hex(16)
        return {
            signing.KEY_HEADER: self.key_id,
            signing.TIMESTAMP_HEADER: timestamp,
            signing.NONCE_HEADER: nonce,
            signing.SIGNATURE_HEADER: signing.sign(
                self.secret, method, path, timestamp, nonce, body
            ),
        }

    def post(self, path: str, payload: Any, idempotency_key: str | None = None) -> httpx.Response:
        body = json.dumps(payload).encode() if not isinstance(payload, bytes) else payload
        headers = self.headers("POST", path, body) | {"Content-Type": "application/json"}
        headers[signing.IDEMPOTENCY_HEADER] = idempotency_key or secrets.token_hex(16)
        return self.http.post(path, content=body, headers=headers)

    def get(self, path: str) -> httpx.Response:
        return self.http.get(path, headers=self.headers("GET", path, b""))
