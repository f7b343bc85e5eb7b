"""The merchant API's request signature, shared by the server and the client.

HMAC-SHA256, keyed by the API key's secret, over the method, the path with its query, the
timestamp, the nonce and the SHA-256 of the body, newline-separated. Hex in the
``Clearhouse-Signature`` header, beside ``Clearhouse-Key``, ``Clearhouse-Timestamp`` (Unix
seconds) and ``Clearhouse-Nonce``.
"""

from __future__ import annotations

import hashlib
import hmac

KEY_HEADER = "Clearhouse-Key"
TIMESTAMP_HEADER = "Clearhouse-Timestamp"
NONCE_HEADER = "Clearhouse-Nonce"
SIGNATURE_HEADER = "Clearhouse-Signature"
IDEMPOTENCY_HEADER = "Idempotency-Key"
WINDOW_SECONDS = 300


def string_to_sign(method: str, path: str, timestamp: str, nonce: str, body: bytes) -> bytes:
    digest = hashlib.sha256(body).hexdigest()
    return f"{method.upper()}\n{path}\n{timestamp}\n{nonce}\n{digest}".encode()


def sign(secret: bytes, method: str, path: str, timestamp: str, nonce: str, body: bytes) -> str:
    return hmac.new(
        secret, string_to_sign(method, path, timestamp, nonce, body), hashlib.sha256
    ).hexdigest()


def verify(
    secret: bytes,
    signature: str,
    method: str,
    path: str,
    timestamp: str,
    nonce: str,
    body: bytes,
) -> bool:
    expected = sign(secret, method, path, timestamp, nonce, body)
    return hmac.compare_digest(expected, signature.lower())
