"""WeChat Pay API v3 wire protocol, shared by the adapter and the sandbox.

Signatures are SHA256-with-RSA (PKCS#1 v1.5) over newline-terminated lines: requests sign
``METHOD, PATH?QUERY, TIMESTAMP, NONCE, BODY``; responses and notifications sign ``TIMESTAMP,
NONCE, BODY``. Notification payloads are AEAD_AES_256_GCM ciphertexts under the merchant's
APIv3 key. Responses are verified with the "WeChat Pay public key" (public key mode), named in
``Wechatpay-Serial`` by its ``PUB_KEY_ID_...`` id.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import secrets
import string
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

from cryptography.exceptions import InvalidSignature, InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from clearhouse.errors import ClearhouseError
from clearhouse.gateway.channels import keys

SIGNATURE_TYPE = "WECHATPAY2-SHA256-RSA2048"
AES_ALGORITHM = "AEAD_AES_256_GCM"
TIMESTAMP_WINDOW = timedelta(minutes=5)
# China has kept UTC+8 without daylight saving since 1991: a fixed offset is exact and needs no
# tz database.
CHINA_TZ = timezone(timedelta(hours=8), "Asia/Shanghai")


class WechatPayProtocolError(ClearhouseError):
    code = "WECHATPAY_PROTOCOL_ERROR"


class SignatureError(WechatPayProtocolError):
    """A signature, its headers or its timestamp do not verify."""

    code = "BAD_SIGNATURE"


class DecryptError(WechatPayProtocolError):
    code = "BAD_CIPHERTEXT"


# --- credentials -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class WechatPayCredentials:
    """What a merchant holds (and, with ``platform_private_key``, what the sandbox holds)."""

    mchid: str
    appid: str
    merchant_private_key: str  # PEM, PKCS#8: signs requests
    merchant_serial_no: str  # serial of the merchant API certificate, named in Authorization
    apiv3_key: str  # 32 ASCII characters: the AES-256 key of notifications
    platform_public_key: str  # PEM: verifies responses and notifications
    platform_public_key_id: str  # "PUB_KEY_ID_...", sent as Wechatpay-Serial
    platform_private_key: str | None = None  # only the channel (sandbox) has it

    def __post_init__(self) -> None:
        key = self.apiv3_key
        if len(key) != 32 or not key.isascii():
            raise ValueError("the APIv3 key must be 32 ASCII characters")

    @classmethod
    def generate(
        cls, mchid: str = "1900000109", appid: str = "wxd678efh567hg6787"
    ) -> WechatPayCredentials:
        """Fresh 2048-bit merchant and platform keys, a random serial, key id and APIv3 key."""
        merchant = keys.new_private_key()
        platform = keys.new_private_key()
        alphabet = string.ascii_letters + string.digits
        return cls(
            mchid=mchid,
            appid=appid,
            merchant_private_key=keys.private_pem(merchant),
            merchant_serial_no=secrets.token_hex(20).upper(),
            apiv3_key="".join(secrets.choice(alphabet) for _ in range(32)),
            platform_public_key=keys.public_pem(platform.public_key()),
            platform_public_key_id="PUB_KEY_ID_"
            + "".join(secrets.choice("0123456789") for _ in range(34)),
            platform_private_key=keys.private_pem(platform),
        )

    def merchant_view(self) -> WechatPayCredentials:
        """The same credentials without the channel's private key: what a merchant configures."""
        return replace(self, platform_private_key=None)

    def to_dict(self) -> dict[str, str]:
        out = {
            "mchid": self.mchid,
            "appid": self.appid,
            "merchant_private_key": self.merchant_private_key,
            "merchant_serial_no": self.merchant_serial_no,
            "apiv3_key": self.apiv3_key,
            "platform_public_key": self.platform_public_key,
            "platform_public_key_id": self.platform_public_key_id,
        }
        if self.platform_private_key is not None:
            out["platform_private_key"] = self.platform_private_key
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> WechatPayCredentials:
        fields = (
            "mchid",
            "appid",
            "merchant_private_key",
            "merchant_serial_no",
            "apiv3_key",
            "platform_public_key",
            "platform_public_key_id",
        )
        values = {name: str(data[name]) for name in fields}
        private = data.get("platform_private_key")
        return cls(**values, platform_private_key=None if private is None else str(private))

    def require_platform_key(self) -> str:
        if self.platform_private_key is None:
            raise ValueError("these credentials have no platform private key (merchant view)")
        return self.platform_private_key


# --- signatures --------------------------------------------------------------------------------


def new_nonce() -> str:
    return secrets.token_hex(16).upper()


def lines(*parts: str | bytes) -> bytes:
    """The signed message: every part followed by ``\\n``, including the last (an empty body
    still contributes its newline)."""
    return b"".join((p.encode() if isinstance(p, str) else p) + b"\n" for p in parts)


def rsa_sign(private_key_pem: str, message: bytes) -> str:
    key = keys.load_private(private_key_pem)
    signature = key.sign(message, padding.PKCS1v15(), hashes.SHA256())
    return base64.b64encode(signature).decode()


def rsa_verify(public_key_pem: str, message: bytes, signature: str) -> bool:
    try:
        raw = base64.b64decode(signature, validate=True)
        keys.load_public(public_key_pem).verify(raw, message, padding.PKCS1v15(), hashes.SHA256())
    except (InvalidSignature, binascii.Error, ValueError):
        return False
    return True


def check_timestamp(timestamp: str, now: datetime) -> None:
    """A signature older or newer than the window is refused: it bounds replays."""
    if not timestamp.isdigit():
        raise SignatureError("timestamp is not a number of seconds", timestamp=timestamp)
    signed_at = datetime.fromtimestamp(int(timestamp), UTC)
    if abs(now - signed_at) > TIMESTAMP_WINDOW:
        raise SignatureError("timestamp outside the 5-minute window", timestamp=timestamp)


@dataclass(frozen=True, slots=True)
class Authorization:
    mchid: str
    nonce_str: str
    signature: str
    timestamp: str
    serial_no: str


_AUTH_PARAM = re.compile(r'\s*(\w+)="([^"]*)"\s*')


def build_authorization(
    creds: WechatPayCredentials,
    method: str,
    target: str,
    body: bytes,
    now: datetime,
    nonce: str | None = None,
) -> str:
    """The request's ``Authorization`` header; ``target`` is the path with its query string."""
    timestamp = str(int(now.timestamp()))
    nonce = nonce or new_nonce()
    signature = rsa_sign(
        creds.merchant_private_key, lines(method.upper(), target, timestamp, nonce, body)
    )
    return (
        f'{SIGNATURE_TYPE} mchid="{creds.mchid}",nonce_str="{nonce}",'
        f'signature="{signature}",timestamp="{timestamp}",serial_no="{creds.merchant_serial_no}"'
    )


def parse_authorization(value: str) -> Authorization:
    scheme, _, params = value.strip().partition(" ")
    if scheme != SIGNATURE_TYPE:
        raise SignatureError("unsupported authorization scheme", scheme=scheme)
    found: dict[str, str] = {}
    for part in params.split(","):
        match = _AUTH_PARAM.fullmatch(part)
        if match is None:
            raise SignatureError("malformed authorization parameter")
        found[match.group(1)] = match.group(2)
    try:
        return Authorization(
            found["mchid"],
            found["nonce_str"],
            found["signature"],
            found["timestamp"],
            found["serial_no"],
        )
    except KeyError as exc:
        raise SignatureError(f"authorization lacks {exc.args[0]}") from None


def verify_authorization(
    value: str,
    method: str,
    target: str,
    body: bytes,
    creds: WechatPayCredentials,
    now: datetime,
) -> Authorization:
    """Check a merchant request as the channel does; raise ``SignatureError`` if it fails."""
    auth = parse_authorization(value)
    if auth.mchid != creds.mchid:
        raise SignatureError("unknown mchid", mchid=auth.mchid)
    if auth.serial_no.upper() != creds.merchant_serial_no.upper():
        raise SignatureError("unknown certificate serial", serial_no=auth.serial_no)
    check_timestamp(auth.timestamp, now)
    message = lines(method.upper(), target, auth.timestamp, auth.nonce_str, body)
    public_pem = keys.public_pem(keys.load_private(creds.merchant_private_key).public_key())
    if not rsa_verify(public_pem, message, auth.signature):
        raise SignatureError("request signature does not verify")
    return auth


def signed_headers(creds: WechatPayCredentials, body: bytes, now: datetime) -> dict[str, str]:
    """The channel's signature headers on a response or a notification."""
    timestamp = str(int(now.timestamp()))
    nonce = new_nonce()
    return {
        "Wechatpay-Timestamp": timestamp,
        "Wechatpay-Nonce": nonce,
        "Wechatpay-Signature": rsa_sign(
            creds.require_platform_key(), lines(timestamp, nonce, body)
        ),
        "Wechatpay-Serial": creds.platform_public_key_id,
        "Wechatpay-Signature-Type": SIGNATURE_TYPE,
    }


def verify_signed(
    headers: Mapping[str, str], body: bytes, creds: WechatPayCredentials, now: datetime
) -> None:
    """Verify a response's or notification's signature headers; raise ``SignatureError``."""
    lower = {k.lower(): v for k, v in headers.items()}
    try:
        timestamp = lower["wechatpay-timestamp"]
        nonce = lower["wechatpay-nonce"]
        signature = lower["wechatpay-signature"]
        serial = lower["wechatpay-serial"]
    except KeyError as exc:
        raise SignatureError(f"missing header {exc.args[0]}") from None
    signature_type = lower.get("wechatpay-signature-type", SIGNATURE_TYPE)
    if signature_type != SIGNATURE_TYPE:
        raise SignatureError("unsupported signature type", signature_type=signature_type)
    if serial != creds.platform_public_key_id:
        raise SignatureError("signed with an unknown key", serial=serial)
    check_timestamp(timestamp, now)
    if not rsa_verify(creds.platform_public_key, lines(timestamp, nonce, body), signature):
        raise SignatureError("signature does not verify")


# --- notification resources (AEAD_AES_256_GCM) -------------------------------------------------


def encrypt_resource(
    apiv3_key: str, plaintext: str, associated_data: str, original_type: str
) -> dict[str, str]:
    # WeChat's nonce is 12 printable characters, used as the 12-byte GCM nonce as they are.
    nonce = secrets.token_hex(6)
    sealed = AESGCM(apiv3_key.encode()).encrypt(
        nonce.encode(), plaintext.encode(), associated_data.encode()
    )
    return {
        "original_type": original_type,
        "algorithm": AES_ALGORITHM,
        "ciphertext": base64.b64encode(sealed).decode(),
        "associated_data": associated_data,
        "nonce": nonce,
    }


def decrypt_resource(apiv3_key: str, resource: Mapping[str, Any]) -> str:
    if resource.get("algorithm") != AES_ALGORITHM:
        raise DecryptError("unsupported algorithm", algorithm=str(resource.get("algorithm")))
    nonce, ciphertext = resource.get("nonce"), resource.get("ciphertext")
    associated = resource.get("associated_data") or ""
    if not isinstance(nonce, str) or not isinstance(ciphertext, str):
        raise DecryptError("resource lacks nonce or ciphertext")
    if not isinstance(associated, str):
        raise DecryptError("associated_data is not a string")
    try:
        sealed = base64.b64decode(ciphertext, validate=True)
        plain = AESGCM(apiv3_key.encode()).decrypt(nonce.encode(), sealed, associated.encode())
        return plain.decode()
    except (InvalidTag, binascii.Error, ValueError, UnicodeDecodeError):
        raise DecryptError("resource does not decrypt") from None


# --- wire formats ------------------------------------------------------------------------------


def format_time(instant: datetime) -> str:
    """RFC 3339 in China time, as WeChat writes times: ``2018-06-08T10:34:56+08:00``."""
    return instant.astimezone(CHINA_TZ).replace(microsecond=0).isoformat()


def parse_time(text: str) -> datetime:
    parsed = datetime.fromisoformat(text)
    if parsed.tzinfo is None:
        raise ValueError(f"time without offset: {text!r}")
    return parsed.astimezone(UTC)


def dumps(payload: Mapping[str, Any]) -> bytes:
    return json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode()


def error_body(code: str, message: str) -> bytes:
    return dumps({"code": code, "message": message})


def notification_body(
    creds: WechatPayCredentials,
    event_type: str,
    summary: str,
    resource: Mapping[str, Any],
    original_type: str,
    notification_id: str,
    now: datetime,
) -> bytes:
    """A notification envelope with its resource encrypted (``resource_type`` encrypt-resource)."""
    encrypted = encrypt_resource(
        creds.apiv3_key, dumps(resource).decode(), original_type, original_type
    )
    return dumps(
        {
            "id": notification_id,
            "create_time": format_time(now),
            "resource_type": "encrypt-resource",
            "event_type": event_type,
            "summary": summary,
            "resource": encrypted,
        }
    )


def open_notification(
    creds: WechatPayCredentials, headers: Mapping[str, str], body: bytes, now: datetime
) -> tuple[str, str, dict[str, Any]]:
    """Verify and decrypt a notification: its event type, decrypted resource text and JSON."""
    verify_signed(headers, body, creds, now)
    try:
        envelope = json.loads(body)
        event_type = envelope["event_type"]
        resource = envelope["resource"]
    except (ValueError, KeyError, TypeError):
        raise WechatPayProtocolError("notification envelope does not parse") from None
    if envelope.get("resource_type") != "encrypt-resource" or not isinstance(resource, dict):
        raise WechatPayProtocolError("notification resource is not encrypted")
    plain = decrypt_resource(creds.apiv3_key, resource)
    try:
        decoded = json.loads(plain)
    except ValueError:
        raise WechatPayProtocolError("decrypted resource is not JSON") from None
    if not isinstance(event_type, str) or not isinstance(decoded, dict):
        raise WechatPayProtocolError("notification has an unexpected shape")
    return event_type, plain, decoded
