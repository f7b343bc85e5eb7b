"""Quick pay wire rules (``docs/channels/quickpay.md``), shared by the adapter and the sandbox.

- Messages are form-encoded ``key=value`` both ways (UTF-8, percent-encoded).
- ``signMethod=01``: the signature is SHA256withRSA (PKCS#1 v1.5, base64) over the *lower-case
  hex SHA-256 digest* of the sign string, as the UnionPay 5.1.0 gateway does; the sign string is
  every field but ``signature``, without empty values, sorted by name, ``k=v`` joined by ``&``.
  ``certId`` names the signing key and is itself signed.
- Sensitive fields (card number, ID number, phone, expiry, CVN2) travel encrypted with the
  channel's encryption public key, RSA-OAEP (SHA-256), base64; ``encryptCertId`` names that key.
- Amounts are integer fen (``txnAmt=1234`` is 12.34 CNY); times are ``yyyyMMddHHmmss`` Beijing.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from datetime import UTC, date, datetime, timedelta, timezone
from typing import Any
from urllib.parse import parse_qsl, urlencode

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding

from clearhouse.errors import ConfigurationError
from clearhouse.gateway.channels import keys
from clearhouse.money import Money

VERSION = "5.1.0"
ENCODING = "UTF-8"
SIGN_METHOD = "01"  # RSA, SHA-256
BIZ_TYPE = "000902"  # token payment
ACCESS_TYPE = "0"  # a merchant connected directly
CHANNEL_TYPE = "07"  # internet
CURRENCY = "CNY"
CURRENCY_CODE = "156"  # ISO 4217 numeric, as the card networks send it
CERT_TYPE_ID_CARD = "01"
# ``authMethod`` of a consumption the merchant verified itself (the payer's payment password):
# taken in place of an SMS code. A departure from the original (docs/channels/quickpay.md 4.5).
AUTH_MERCHANT_PASSWORD = "01"
# China has kept UTC+8 without daylight saving since 1991: a fixed offset is exact.
BEIJING = timezone(timedelta(hours=8), "Asia/Shanghai")
TIME_FORMAT = "%Y%m%d%H%M%S"

BACK_TRANS_PATH = "/gateway/api/backTransReq.do"
QUERY_PATH = "/gateway/api/queryTrans.do"
FILE_PATH = "/gateway/api/fileTransfer.do"

# (txnType, txnSubType) of each message.
BIND_OPEN = ("72", "01")  # verify the card's elements, send the SMS code
BIND_CONFIRM = ("72", "02")  # confirm with the SMS code: the token
UNBIND = ("74", "01")
BIND_QUERY = ("78", "01")
PAY_SMS = ("77", "02")
CONSUME = ("01", "01")
REFUND = ("04", "00")
QUERY = ("00", "00")
FILE = ("76", "01")

SUCCESS = "00"
# respCode -> (the adapter's stable name, the channel's message). 03/05/06 say nothing final.
RESPONSE_CODES = {
    "00": ("SUCCESS", "成功"),
    "03": ("IN_DOUBT", "交易状态未明, 请查询"),
    "05": ("PROCESSING", "交易已受理, 请稍后查询交易结果"),
    "06": ("SYSTEM_BUSY", "系统繁忙"),
    "10": ("BAD_MESSAGE", "报文格式错误"),
    "11": ("BAD_SIGNATURE", "验证签名失败"),
    "12": ("DUPLICATE_ORDER", "重复交易"),
    "13": ("MISSING_FIELD", "报文交易要素缺失"),
    "32": ("NO_PERMISSION", "无此交易权限"),
    "33": ("CARD_LIMIT_EXCEEDED", "交易金额超过渠道限额"),
    "34": ("ORDER_NOT_FOUND", "查无此交易"),
    "35": ("ORIGINAL_NOT_REFUNDABLE", "原交易不存在或状态不正确"),
    "36": ("REFUND_EXCEEDS_PAYMENT", "退货金额超过原交易可退金额"),
    "39": ("ORDER_EXPIRED", "交易已超过支付时间"),
    "40": ("CARD_NOT_BOUND", "绑定关系检查失败"),
    "61": ("CARD_NUMBER_INVALID", "输入的卡号无效"),
    "64": ("INSUFFICIENT_FUNDS", "卡上的余额不足"),
    "65": ("CARD_SECURITY_MISMATCH", "有效期或CVN2输入有误"),
    "66": ("CARD_ELEMENTS_MISMATCH", "持卡人身份信息或手机号输入不正确"),
    "67": ("SMS_CODE_LOCKED", "验证码错误次数超限"),
    "69": ("SMS_CODE_EXPIRED", "短信验证码已过期"),
    "70": ("SMS_CODE_REQUIRED", "需要短信验证码"),
    "71": ("SMS_CODE_WRONG", "短信验证码校验失败"),
    "73": ("CARD_EXPIRED", "支付卡已超过有效期"),
    "78": ("ISSUER_LIMIT_EXCEEDED", "超过发卡行限额"),
    "98": ("FILE_NOT_FOUND", "文件不存在"),
}
UNCLEAR_CODES = frozenset({"03", "05", "06"})


def code_name(code: str) -> str:
    """The stable name of a respCode (``RESP_<code>`` for one this table does not know)."""
    known = RESPONSE_CODES.get(code)
    return known[0] if known else f"RESP_{code}"


def code_message(code: str) -> str:
    known = RESPONSE_CODES.get(code)
    return known[1] if known else "交易失败"


ORDER_ID = re.compile(r"[0-9A-Za-z_\-]{1,40}")


# -- credentials -------------------------------------------------------------------------------


def _digits(prefix: str, length: int) -> str:
    return prefix + "".join(secrets.choice("0123456789") for _ in range(length - len(prefix)))


@dataclass(frozen=True, slots=True)
class QuickpayCredentials:
    """Three key pairs: the merchant's signing pair, the channel's signing pair and the channel's
    encryption pair, each named by a certificate id. The channel's two private keys exist only
    in the sandbox; ``merchant_view()`` drops them."""

    mer_id: str  # the merchant number at the channel (15 digits)
    cert_id: str  # the merchant's signing certificate id
    merchant_private_key_pem: str | None  # signs our requests (merchant side only)
    merchant_public_key_pem: str  # verifies our requests (registered with the channel)
    channel_cert_id: str  # the channel's signing certificate id
    channel_private_key_pem: str | None  # signs answers and notifications (sandbox only)
    channel_public_key_pem: str
    encrypt_cert_id: str  # the channel's encryption certificate id
    encrypt_private_key_pem: str | None  # decrypts sensitive fields (sandbox only)
    encrypt_public_key_pem: str

    @classmethod
    def generate(cls, mer_id: str | None = None) -> QuickpayCredentials:
        merchant_private, merchant_public = keys.new_key_pair()
        channel_private, channel_public = keys.new_key_pair()
        encrypt_private, encrypt_public = keys.new_key_pair()
        return cls(
            mer_id=mer_id or _digits("898", 15),
            cert_id=_digits("6", 11),
            merchant_private_key_pem=merchant_private,
            merchant_public_key_pem=merchant_public,
            channel_cert_id=_digits("7", 11),
            channel_private_key_pem=channel_private,
            channel_public_key_pem=channel_public,
            encrypt_cert_id=_digits("8", 11),
            encrypt_private_key_pem=encrypt_private,
            encrypt_public_key_pem=encrypt_public,
        )

    def merchant_view(self) -> QuickpayCredentials:
        """What a merchant may hold: everything but the channel's two private keys."""
        return replace(self, channel_private_key_pem=None, encrypt_private_key_pem=None)

    def require_merchant_key(self) -> str:
        if self.merchant_private_key_pem is None:
            raise ConfigurationError("quick pay credentials lack the merchant private key")
        return self.merchant_private_key_pem

    def require_channel_keys(self) -> tuple[str, str]:
        """The channel's signing and decryption keys (the sandbox plays the channel)."""
        if self.channel_private_key_pem is None or self.encrypt_private_key_pem is None:
            raise ConfigurationError("quick pay credentials lack the channel's private keys")
        return self.channel_private_key_pem, self.encrypt_private_key_pem

    def to_dict(self) -> dict[str, str | None]:
        return {f.name: getattr(self, f.name) for f in fields(self)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> QuickpayCredentials:
        def text(name: str) -> str:
            try:
                return str(data[name])
            except KeyError:
                raise ConfigurationError(f"quick pay credentials miss {name!r}") from None

        def optional(name: str) -> str | None:
            value = data.get(name)
            return None if value in (None, "") else str(value)

        return cls(
            mer_id=text("mer_id"),
            cert_id=text("cert_id"),
            merchant_private_key_pem=optional("merchant_private_key_pem"),
            merchant_public_key_pem=text("merchant_public_key_pem"),
            channel_cert_id=text("channel_cert_id"),
            channel_private_key_pem=optional("channel_private_key_pem"),
            channel_public_key_pem=text("channel_public_key_pem"),
            encrypt_cert_id=text("encrypt_cert_id"),
            encrypt_private_key_pem=optional("encrypt_private_key_pem"),
            encrypt_public_key_pem=text("encrypt_public_key_pem"),
        )


# -- keys, signatures, encryption --------------------------------------------------------------


def sign_string(params: Mapping[str, str]) -> str:
    return "&".join(
        f"{k}={params[k]}" for k in sorted(params) if k != "signature" and params[k] != ""
    )


def _digest(params: Mapping[str, str]) -> bytes:
    # The card network signs the hex digest rather than the string itself: a fixed-size input
    # whatever the message length. Kept, so a real gateway's signatures would verify here.
    return hashlib.sha256(sign_string(params).encode("utf-8")).hexdigest().encode("ascii")


def sign(params: Mapping[str, str], cert_id: str, private_key_pem: str) -> dict[str, str]:
    """``params`` with ``certId`` and ``signMethod`` set and the ``signature`` over them."""
    signed = {**params, "certId": cert_id, "signMethod": SIGN_METHOD}
    key = keys.load_private(private_key_pem)
    raw = key.sign(_digest(signed), padding.PKCS1v15(), hashes.SHA256())
    signed["signature"] = base64.b64encode(raw).decode("ascii")
    return signed


def verify(params: Mapping[str, str], public_key_pem: str) -> bool:
    if params.get("signMethod") != SIGN_METHOD:
        return False
    try:
        raw = base64.b64decode(params.get("signature", ""), validate=True)
        keys.load_public(public_key_pem).verify(
            raw, _digest(params), padding.PKCS1v15(), hashes.SHA256()
        )
    except (InvalidSignature, binascii.Error, ValueError):
        return False
    return True


def _oaep() -> padding.OAEP:
    return padding.OAEP(mgf=padding.MGF1(hashes.SHA256()), algorithm=hashes.SHA256(), label=None)


def encrypt(text: str, public_key_pem: str) -> str:
    """RSA-OAEP: random padding, so the same card number never encrypts to the same text."""
    raw = keys.load_public(public_key_pem).encrypt(text.encode("utf-8"), _oaep())
    return base64.b64encode(raw).decode("ascii")


def decrypt(blob: str, private_key_pem: str) -> str:
    """Raises ``ValueError`` for anything that does not decrypt."""
    try:
        raw = base64.b64decode(blob, validate=True)
        return keys.load_private(private_key_pem).decrypt(raw, _oaep()).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError) as exc:
        raise ValueError("not an encrypted field") from exc


# -- customerInfo ------------------------------------------------------------------------------


def _pairs(items: Mapping[str, str]) -> str:
    for value in items.values():
        if any(c in value for c in "&{}"):
            raise ValueError("customerInfo values may not contain '&', '{' or '}'")
    return "&".join(f"{k}={v}" for k, v in items.items() if v)


def pack_customer_info(
    clear: Mapping[str, str], sensitive: Mapping[str, str], public_key_pem: str
) -> str:
    """``base64("{k=v&...&encryptedInfo=<RSA-OAEP of the sensitive k=v&...>}")``."""
    inner = dict(clear)
    secret = _pairs(sensitive)
    if secret:
        inner["encryptedInfo"] = encrypt(secret, public_key_pem)
    return base64.b64encode(("{" + _pairs(inner) + "}").encode("utf-8")).decode("ascii")


def _split(text: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for part in filter(None, text.split("&")):
        key, sep, value = part.partition("=")
        if not sep or key in out:
            raise ValueError("malformed customerInfo")
        out[key] = value
    return out


def unpack_customer_info(blob: str, private_key_pem: str) -> dict[str, str]:
    """The clear and the decrypted fields together (the channel's side)."""
    try:
        text = base64.b64decode(blob, validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError) as exc:
        raise ValueError("customerInfo is not base64 UTF-8") from exc
    if not (text.startswith("{") and text.endswith("}")):
        raise ValueError("customerInfo is not braced")
    found = _split(text[1:-1])
    secret = found.pop("encryptedInfo", None)
    if secret is not None:
        hidden = _split(decrypt(secret, private_key_pem))
        if hidden.keys() & found.keys():
            raise ValueError("a field is both clear and encrypted")
        found.update(hidden)
    return found


# -- forms and answers -------------------------------------------------------------------------


def encode_form(params: Mapping[str, str]) -> str:
    return urlencode(params)


def decode_form(raw: str) -> dict[str, str]:
    """A form body as a dict; a field given twice is refused (which one was signed?)."""
    pairs = parse_qsl(raw, keep_blank_values=True, strict_parsing=bool(raw))
    params = dict(pairs)
    if len(params) != len(pairs):
        raise ValueError("a field appears twice")
    return params


class BadAnswer(Exception):
    """An answer or notification that cannot be trusted; ``kind`` is BAD_RESPONSE or
    BAD_SIGNATURE."""

    def __init__(self, kind: str, detail: str) -> None:
        super().__init__(f"{kind}: {detail}")
        self.kind = kind


def read_signed(raw: str, creds: QuickpayCredentials) -> dict[str, str]:
    """Parse an answer or a notification and verify it was signed by the channel for us."""
    try:
        params = decode_form(raw)
    except ValueError as exc:
        raise BadAnswer("BAD_RESPONSE", f"not a form body: {exc}") from exc
    if "respCode" not in params:
        raise BadAnswer("BAD_RESPONSE", "no respCode")
    if params.get("certId") != creds.channel_cert_id or not verify(
        params, creds.channel_public_key_pem
    ):
        raise BadAnswer("BAD_SIGNATURE", "unsigned, or not signed by the channel's key")
    if params.get("merId") != creds.mer_id:
        raise BadAnswer("BAD_RESPONSE", "for another merchant")
    return params


# -- values ------------------------------------------------------------------------------------


def format_time(instant: datetime) -> str:
    if instant.tzinfo is None:
        raise ValueError("naive datetimes are not instants; attach a timezone")
    return instant.astimezone(BEIJING).strftime(TIME_FORMAT)


def parse_time(text: str) -> datetime:
    return datetime.strptime(text, TIME_FORMAT).replace(tzinfo=BEIJING).astimezone(UTC)


def business_day(instant: datetime) -> date:
    """The Beijing calendar day an instant belongs to (limits and files are per this day)."""
    return instant.astimezone(BEIJING).date()


def format_fen(amount: Money) -> str:
    if amount.currency != CURRENCY:
        raise ValueError(f"quick pay settles in {CURRENCY}, not {amount.currency}")
    return str(amount.amount)


def parse_fen(text: str) -> Money:
    """``"1234"`` is 12.34 CNY; only ASCII digits, no sign, no leading zeros but ``"0"``."""
    if not re.fullmatch(r"0|[1-9][0-9]{0,17}", text):
        raise ValueError(f"not an amount in fen: {text!r}")
    return Money(int(text), CURRENCY)


def mask_card(card_no: str) -> str:
    """First six and last four digits, as card networks and PCI DSS allow to show."""
    return card_no[:6] + "*" * (len(card_no) - 10) + card_no[-4:]


def mask_phone(phone: str) -> str:
    return phone[:3] + "****" + phone[-4:]


def expiry_to_wire(mmyy: str) -> str:
    """Cards print MM/YY; the network field ``expired`` is YYMM."""
    return mmyy[2:] + mmyy[:2]


def expiry_from_wire(yymm: str) -> str:
    return yymm[2:] + yymm[:2]
