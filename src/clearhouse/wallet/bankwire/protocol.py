"""The payout bank's wire protocol: what the adapter sends and the sandbox checks.

Requests (JSON bodies, UTF-8):

- ``POST /payouts/batches``: ``{"batch_no", "rail", "currency", "count", "total", "items":
  [{"ref", "amount", "account_no", "account_name"}]}``. Amounts are decimal strings in major
  units (``"1234.50"``), as bank files carry them; ``count`` and ``total`` must match the items.
  The answer has one result per item: ``{"ref", "status": "PAID" | "FAILED", "code",
  "bank_txn_id", "paid_at"}``. An item already known under its ``ref`` is not paid again: its
  stored result is the answer.
- ``GET /payouts/items/{ref}``: the stored result of one item, or 404 ``NOT_FOUND``.

Authentication: every request carries ``X-Client-Id``, ``X-Timestamp`` (Unix seconds, within
five minutes of the bank's clock) and ``X-Signature``: lowercase hex HMAC-SHA256 under the
shared key of ``METHOD \\n PATH \\n TIMESTAMP \\n`` followed by the raw body. Every answer of the
bank, errors included, carries ``X-Timestamp`` and ``X-Signature`` over ``TIMESTAMP \\n`` and
the body, so a forged or altered answer is never believed. One shared key each way is how
many domestic corporate banking interfaces work; the key never travels.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from clearhouse.errors import ClearhouseError

WINDOW_S = 300
CLIENT_HEADER = "X-Client-Id"
TIMESTAMP_HEADER = "X-Timestamp"
SIGNATURE_HEADER = "X-Signature"
BATCH_PATH = "/payouts/batches"
ITEM_PATH = "/payouts/items/"


class SignatureError(ClearhouseError):
    code = "BAD_SIGNATURE"


@dataclass(frozen=True, slots=True)
class BankCredentials:
    client_id: str
    key: str = field(repr=False)  # hex: the shared HMAC key

    @classmethod
    def generate(cls) -> BankCredentials:
        return cls(f"corp{secrets.randbelow(10**8):08d}", secrets.token_hex(32))

    def to_dict(self) -> dict[str, str]:
        return {"client_id": self.client_id, "key": self.key}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> BankCredentials:
        return cls(str(data["client_id"]), str(data["key"]))

    def merchant_view(self) -> BankCredentials:
        """What the platform holds: the same shared key (the bank keeps its copy)."""
        return self


def _mac(key: str, message: bytes) -> str:
    return hmac.new(bytes.fromhex(key), message, hashlib.sha256).hexdigest()


def request_headers(
    creds: BankCredentials, method: str, path: str, body: bytes, now: datetime
) -> dict[str, str]:
    timestamp = str(int(now.timestamp()))
    message = f"{method}\n{path}\n{timestamp}\n".encode() + body
    return {
        CLIENT_HEADER: creds.client_id,
        TIMESTAMP_HEADER: timestamp,
        SIGNATURE_HEADER: _mac(creds.key, message),
    }


def verify_request(
    creds: BankCredentials,
    method: str,
    path: str,
    headers: dict[str, str],
    body: bytes,
    now: datetime,
) -> None:
    lower = {k.lower(): v for k, v in headers.items()}
    client = lower.get(CLIENT_HEADER.lower(), "")
    timestamp = lower.get(TIMESTAMP_HEADER.lower(), "")
    signature = lower.get(SIGNATURE_HEADER.lower(), "")
    if client != creds.client_id:
        raise SignatureError("unknown client")
    if not timestamp.isascii() or not timestamp.isdigit() or len(timestamp) > 12:
        raise SignatureError("bad timestamp")
    if abs(int(now.timestamp()) - int(timestamp)) > WINDOW_S:
        raise SignatureError("timestamp outside the window")
    message = f"{method}\n{path}\n{timestamp}\n".encode() + body
    if not hmac.compare_digest(_mac(creds.key, message), signature):
        raise SignatureError("signature does not verify")


def answer_headers(creds: BankCredentials, body: bytes, now: datetime) -> dict[str, str]:
    timestamp = str(int(now.timestamp()))
    return {
        TIMESTAMP_HEADER: timestamp,
        SIGNATURE_HEADER: _mac(creds.key, f"{timestamp}\n".encode() + body),
    }


def verify_answer(creds: BankCredentials, headers: dict[str, str], body: bytes) -> None:
    lower = {k.lower(): v for k, v in headers.items()}
    timestamp = lower.get(TIMESTAMP_HEADER.lower(), "")
    signature = lower.get(SIGNATURE_HEADER.lower(), "")
    expected = _mac(creds.key, f"{timestamp}\n".encode() + body)
    if not timestamp or not hmac.compare_digest(expected, signature):
        raise SignatureError("the bank's answer does not verify")
