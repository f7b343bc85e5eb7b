"""Alipay OpenAPI (gateway.do, version 1.0) wire rules, shared by the adapter and the sandbox.

- RSA2 is SHA256withRSA, PKCS#1 v1.5, base64.
- A request is signed over its parameters sorted by name as ``k=v`` joined by ``&``, without
  ``sign`` and without empty values; ``sign_type`` *is* included (the SDKs do the same).
- A notification is signed the same way but without ``sign`` *and* ``sign_type``.
- An answer is ``{"<method>_response": {...}, "sign": "..."}`` where the signature covers the
  exact text of the ``<method>_response`` value as sent: the verifier must cut that text out of
  the raw body, never re-serialise the parsed object (key order, spacing and escapes would
  differ).
- Times are ``YYYY-MM-DD HH:MM:SS`` in Beijing time; amounts are yuan with two decimals.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding

from clearhouse.gateway.channels import keys
from clearhouse.gateway.channels.alipay.credentials import AlipayCredentials, to_pem
from clearhouse.money import Money

__all__ = [
    "BEIJING",
    "CURRENCY",
    "SIGN_TYPE",
    "SUCCESS_CODE",
    "AlipayCredentials",
    "BadAnswer",
    "build_answer",
    "dump_json",
    "format_amount",
    "format_time",
    "notification_sign_string",
    "parse_amount",
    "parse_time",
    "read_answer",
    "request_sign_string",
    "response_key",
    "sign_notification",
    "sign_request",
    "sign_rsa2",
    "to_pem",
    "top_level_members",
    "verify_notification",
    "verify_request",
    "verify_rsa2",
]

SIGN_TYPE = "RSA2"
CURRENCY = "CNY"
# China has kept UTC+8 without daylight saving since 1991: a fixed offset is exact and needs no
# time zone database.
BEIJING = timezone(timedelta(hours=8), "Asia/Shanghai")
TIME_FORMAT = "%Y-%m-%d %H:%M:%S"

SUCCESS_CODE = "10000"


# -- keys and signatures ---------------------------------------------------------------------


def sign_rsa2(message: str, private_key_pem: str) -> str:
    signature = keys.load_private(private_key_pem).sign(
        message.encode("utf-8"), padding.PKCS1v15(), hashes.SHA256()
    )
    return base64.b64encode(signature).decode("ascii")


def verify_rsa2(message: str, signature: str, public_key_pem: str) -> bool:
    try:
        raw = base64.b64decode(signature, validate=True)
        keys.load_public(public_key_pem).verify(
            raw, message.encode("utf-8"), padding.PKCS1v15(), hashes.SHA256()
        )
    except (InvalidSignature, binascii.Error, ValueError):
        return False
    return True


# -- sign strings ------------------------------------------------------------------------------


def _sign_string(params: Mapping[str, str], excluded: Iterable[str]) -> str:
    skip = set(excluded)
    return "&".join(f"{k}={params[k]}" for k in sorted(params) if k not in skip and params[k] != "")


def request_sign_string(params: Mapping[str, str]) -> str:
    return _sign_string(params, ("sign",))


def notification_sign_string(params: Mapping[str, str]) -> str:
    return _sign_string(params, ("sign", "sign_type"))


def sign_request(params: Mapping[str, str], private_key_pem: str) -> dict[str, str]:
    signed = dict(params)
    signed["sign"] = sign_rsa2(request_sign_string(params), private_key_pem)
    return signed


def verify_request(params: Mapping[str, str], public_key_pem: str) -> bool:
    return verify_rsa2(request_sign_string(params), params.get("sign", ""), public_key_pem)


def sign_notification(params: Mapping[str, str], private_key_pem: str) -> dict[str, str]:
    signed = dict(params)
    signed["sign"] = sign_rsa2(notification_sign_string(params), private_key_pem)
    return signed


def verify_notification(params: Mapping[str, str], public_key_pem: str) -> bool:
    return verify_rsa2(notification_sign_string(params), params.get("sign", ""), public_key_pem)


# -- answers -----------------------------------------------------------------------------------


def response_key(method: str) -> str:
    """``alipay.trade.query`` answers under ``alipay_trade_query_response``."""
    return method.replace(".", "_") + "_response"


def dump_json(value: Any) -> str:
    # Compact and unescaped, as Alipay sends it (Chinese messages stay readable).
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def build_answer(key: str, payload: Mapping[str, Any], private_key_pem: str | None) -> str:
    """The body of an answer; unsigned when there is no key to sign with (unknown app_id)."""
    text = dump_json(payload)
    if private_key_pem is None:
        return "{" + dump_json(key) + ":" + text + "}"
    sign = sign_rsa2(text, private_key_pem)
    return "{" + dump_json(key) + ":" + text + ',"sign":' + dump_json(sign) + "}"


_DECODER = json.JSONDecoder()


def _skip_ws(raw: str, pos: int) -> int:
    while pos < len(raw) and raw[pos] in " \t\n\r":
        pos += 1
    return pos


def top_level_members(raw: str) -> dict[str, str]:
    """The exact source text of each member of a top-level JSON object.

    Walks the object with the standard decoder so braces inside strings, escapes and nesting are
    handled; a duplicated key is refused (two candidates for the signed text would be ambiguous).
    """
    pos = _skip_ws(raw, 0)
    if raw[pos : pos + 1] != "{":
        raise ValueError("not a JSON object")
    pos = _skip_ws(raw, pos + 1)
    members: dict[str, str] = {}
    if raw[pos : pos + 1] == "}":
        pos += 1
    else:
        while True:
            key, pos = _DECODER.raw_decode(raw, pos)
            if not isinstance(key, str) or key in members:
                raise ValueError("bad or duplicated key")
            pos = _skip_ws(raw, pos)
            if raw[pos : pos + 1] != ":":
                raise ValueError("expected ':'")
            start = _skip_ws(raw, pos + 1)
            _, end = _DECODER.raw_decode(raw, start)
            members[key] = raw[start:end]
            pos = _skip_ws(raw, end)
            separator = raw[pos : pos + 1]
            pos = _skip_ws(raw, pos + 1)
            if separator == "}":
                break
            if separator != ",":
                raise ValueError("expected ',' or '}'")
    if _skip_ws(raw, pos) != len(raw):
        raise ValueError("trailing data after the object")
    return members


class BadAnswer(Exception):
    """An answer that cannot be trusted; ``kind`` is BAD_RESPONSE or BAD_SIGNATURE."""

    def __init__(self, kind: str, detail: str) -> None:
        super().__init__(f"{kind}: {detail}")
        self.kind = kind


def read_answer(raw: str, method: str, alipay_public_key_pem: str) -> dict[str, Any]:
    """Parse an answer to ``method`` and verify its signature over the exact signed text."""
    try:
        members = top_level_members(raw)
    except (ValueError, json.JSONDecodeError) as exc:
        raise BadAnswer("BAD_RESPONSE", f"not a JSON object: {exc}") from exc
    key = response_key(method)
    text = members.get(key)
    if text is None:
        # error_response comes back for a malformed call (unknown method); it is never signed.
        raise BadAnswer("BAD_RESPONSE", f"no {key} in the answer")
    sign_text = members.get("sign")
    sign = json.loads(sign_text) if sign_text is not None else None
    if not isinstance(sign, str) or not verify_rsa2(text, sign, alipay_public_key_pem):
        raise BadAnswer("BAD_SIGNATURE", f"{key} is unsigned or its signature does not verify")
    payload = json.loads(text)
    if not isinstance(payload, dict):
        raise BadAnswer("BAD_RESPONSE", f"{key} is not an object")
    return payload


# -- values ------------------------------------------------------------------------------------


def format_time(instant: datetime) -> str:
    if instant.tzinfo is None:
        raise ValueError("naive datetimes are not instants; attach a timezone")
    return instant.astimezone(BEIJING).strftime(TIME_FORMAT)


def parse_time(text: str) -> datetime:
    """A Beijing wall-clock time as an aware UTC instant; milliseconds (gmt_refund) allowed."""
    fmt = TIME_FORMAT + ".%f" if "." in text else TIME_FORMAT
    return datetime.strptime(text, fmt).replace(tzinfo=BEIJING).astimezone(UTC)


def format_amount(amount: Money) -> str:
    if amount.currency != CURRENCY:
        raise ValueError(f"Alipay OpenAPI settles in {CURRENCY}, not {amount.currency}")
    return str(amount.to_decimal())


def parse_amount(text: str) -> Money:
    return Money.parse(text, CURRENCY)
