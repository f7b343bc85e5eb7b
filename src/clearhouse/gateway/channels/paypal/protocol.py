"""PayPal REST wire format, shared by the adapter and the sandbox: credentials, amounts, times,
error bodies, webhook events and their transmission signatures. Pure.

Amounts cross the wire as ``{"currency_code": "USD", "value": "10.00"}``: major units in a
decimal string, converted here exactly (``Money.parse`` / ``Money.to_decimal``), never through a
float. A webhook transmission is signed with SHA256withRSA over
``transmission_id|transmission_time|webhook_id|crc32(body)`` (the CRC32 of the raw body, in
decimal), and the signer's X.509 certificate is published at ``PAYPAL-CERT-URL``.
"""

from __future__ import annotations

import base64
import json
import re
import secrets
import zlib
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qs, urlsplit

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.x509.oid import NameOID

from clearhouse.errors import ConfigurationError, MoneyError
from clearhouse.gateway.channels import keys
from clearhouse.money import Money

AUTH_ALGO = "SHA256withRSA"
# The currencies PayPal accepts for payments; HUF and TWD are taken in whole units only, though
# ISO 4217 gives them two decimals (PayPal answers DECIMALS_NOT_SUPPORTED otherwise).
CURRENCIES = frozenset(
    {
        "AUD", "BRL", "CAD", "CHF", "CNY", "CZK", "DKK", "EUR", "GBP", "HKD", "HUF", "ILS",
        "JPY", "MXN", "MYR", "NOK", "NZD", "PHP", "PLN", "SEK", "SGD", "THB", "TWD", "USD",
    }
)  # fmt: skip
WHOLE_UNITS_ONLY = frozenset({"HUF", "TWD"})
HEADERS = (  # the transmission headers, lower-cased as HTTP servers hand them over
    "paypal-transmission-id",
    "paypal-transmission-time",
    "paypal-transmission-sig",
    "paypal-cert-url",
    "paypal-auth-algo",
)
ERROR_NAMES = {
    400: "INVALID_REQUEST",
    401: "AUTHENTICATION_FAILURE",
    403: "NOT_AUTHORIZED",
    404: "RESOURCE_NOT_FOUND",
    409: "RESOURCE_CONFLICT",
    422: "UNPROCESSABLE_ENTITY",
    500: "INTERNAL_SERVER_ERROR",
}
_ID_ALPHABET = "0123456789ABCDEFGHJKLMNPRSTUVWXY"
# What an order id may look like: it goes into a URL path, so nothing else is taken from a link.
_ORDER_ID = re.compile(r"[0-9A-Za-z-]{1,64}")
_CERT_VALIDITY = timedelta(days=365 * 3)


class BadAmount(ValueError):
    """An amount object that is not exactly representable in its currency."""


def paypal_id(length: int = 17) -> str:
    """An id in PayPal's style (orders, captures, refunds, payers): uppercase alphanumerics."""
    return "".join(secrets.choice(_ID_ALPHABET) for _ in range(length))


def order_id_from_link(url: str) -> str | None:
    """The order id an approval link carries (``.../checkoutnow?token=<order id>``, for both
    its ``approve`` and ``payer-action`` forms), or None if it carries none."""
    tokens = parse_qs(urlsplit(url).query).get("token", [])
    if len(tokens) != 1 or not _ORDER_ID.fullmatch(tokens[0]):
        return None
    return tokens[0]


@dataclass(frozen=True, slots=True)
class PaypalCredentials:
    """A REST app's client credentials, the merchant's account id and the webhook it listens on.

    ``webhook_key_pem``/``webhook_cert_pem`` are the transmission signer's, held by the sandbox
    only: a merchant verifies with the certificate it fetches from ``PAYPAL-CERT-URL``.
    """

    client_id: str
    client_secret: str
    merchant_id: str  # the account's payer id: the payee of orders, the STL account id
    webhook_id: str  # part of every signature: a transmission for another webhook fails
    webhook_key_pem: str | None = None
    webhook_cert_pem: str | None = None

    @classmethod
    def generate(cls) -> PaypalCredentials:
        key = keys.new_private_key()
        key_pem = keys.private_pem(key)
        return cls(
            client_id="A" + secrets.token_urlsafe(60)[:79],
            client_secret="E" + secrets.token_urlsafe(60)[:79],
            merchant_id=paypal_id(13),
            webhook_id=paypal_id(17),
            webhook_key_pem=key_pem,
            webhook_cert_pem=_self_signed(key),
        )

    def merchant_view(self) -> PaypalCredentials:
        """What a merchant holds: no signing key, and no certificate (it is fetched)."""
        return replace(self, webhook_key_pem=None, webhook_cert_pem=None)

    def require_signer(self) -> tuple[str, str]:
        if self.webhook_key_pem is None or self.webhook_cert_pem is None:
            raise ConfigurationError("PayPal credentials lack the webhook signing key")
        return self.webhook_key_pem, self.webhook_cert_pem

    def to_dict(self) -> dict[str, str | None]:
        return {
            "client_id": self.client_id,
            "client_secret": self.client_secret,
            "merchant_id": self.merchant_id,
            "webhook_id": self.webhook_id,
            "webhook_key_pem": self.webhook_key_pem,
            "webhook_cert_pem": self.webhook_cert_pem,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PaypalCredentials:
        try:
            return cls(
                client_id=str(data["client_id"]),
                client_secret=str(data["client_secret"]),
                merchant_id=str(data["merchant_id"]),
                webhook_id=str(data["webhook_id"]),
                webhook_key_pem=data.get("webhook_key_pem") or None,
                webhook_cert_pem=data.get("webhook_cert_pem") or None,
            )
        except KeyError as exc:
            raise ConfigurationError(f"PayPal credentials miss {exc.args[0]!r}") from exc


def _self_signed(key: rsa.RSAPrivateKey) -> str:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "paypal-sandbox-webhooks")])
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        # A year back: simulated days (the demo, tests) run on clocks set before the keys.
        .not_valid_before(now - timedelta(days=365))
        .not_valid_after(now + _CERT_VALIDITY)
        .sign(key, hashes.SHA256())
    )
    return cert.public_bytes(serialization.Encoding.PEM).decode("ascii")


# --- amounts and times ---------------------------------------------------------------------------


def to_amount(money: Money) -> dict[str, str]:
    """``Money(1000, "USD")`` -> ``{"currency_code": "USD", "value": "10.00"}``."""
    value = money.to_decimal()
    if money.currency in WHOLE_UNITS_ONLY:
        if value != value.to_integral_value():
            raise BadAmount(f"PayPal takes {money.currency} in whole units only: {money}")
        value = value.quantize(1)
    return {"currency_code": money.currency, "value": str(value)}


def parse_amount(data: object) -> Money:
    """An amount object back into ``Money``; more decimals than the currency has is refused."""
    if not isinstance(data, dict):
        raise BadAmount(f"not an amount object: {data!r}")
    code, value = data.get("currency_code"), data.get("value")
    if not isinstance(code, str) or not isinstance(value, str):
        raise BadAmount(f"amount needs string currency_code and value: {data!r}")
    try:
        money = Money.parse(value, code)
    except MoneyError as exc:
        raise BadAmount(exc.message) from None
    if money.amount < 0:
        raise BadAmount(f"negative amount {value!r}")
    return money


def format_time(instant: datetime) -> str:
    return instant.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_time(text: str) -> datetime:
    instant = datetime.fromisoformat(text.replace("Z", "+00:00"))
    if instant.tzinfo is None:
        raise ValueError(f"time without a zone: {text!r}")
    return instant


def dumps(data: Any) -> bytes:
    return json.dumps(data, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def error_body(status: int, issue: str, description: str, debug_id: str) -> dict[str, Any]:
    """PayPal's error shape: a name per HTTP status, the precise reason in ``details[].issue``."""
    name = ERROR_NAMES.get(status, "INTERNAL_SERVER_ERROR")
    return {
        "name": name,
        "message": "The requested action could not be performed, semantically incorrect, or "
        "failed business validation."
        if status == 422
        else description,
        "debug_id": debug_id,
        "details": [{"issue": issue, "description": description}],
        "links": [
            {
                "href": f"https://developer.paypal.com/docs/api/orders/v2/#error-{issue}",
                "rel": "information_link",
                "method": "GET",
            }
        ],
    }


def error_issue(data: dict[str, Any]) -> str | None:
    """The most precise code of an error answer: the first ``details[].issue``, else ``name``
    (or OAuth's ``error``)."""
    details = data.get("details")
    if isinstance(details, list) and details and isinstance(details[0], dict):
        issue = details[0].get("issue")
        if isinstance(issue, str) and issue:
            return issue
    for field in ("name", "error"):
        value = data.get(field)
        if isinstance(value, str) and value:
            return value
    return None


# --- webhooks ------------------------------------------------------------------------------------


def transmission_message(
    transmission_id: str, transmission_time: str, webhook_id: str, body: bytes
) -> bytes:
    crc = zlib.crc32(body) & 0xFFFFFFFF
    return f"{transmission_id}|{transmission_time}|{webhook_id}|{crc}".encode()


def sign_transmission(key_pem: str, message: bytes) -> str:
    key = serialization.load_pem_private_key(key_pem.encode("ascii"), password=None)
    if not isinstance(key, rsa.RSAPrivateKey):
        raise ConfigurationError("the webhook signing key is not RSA")
    return base64.b64encode(key.sign(message, padding.PKCS1v15(), hashes.SHA256())).decode()


def load_certificate(pem: bytes) -> x509.Certificate:
    """Raises ``ValueError`` for anything but one PEM certificate with an RSA key."""
    cert = x509.load_pem_x509_certificate(pem)
    if not isinstance(cert.public_key(), rsa.RSAPublicKey):
        raise ValueError("the certificate's key is not RSA")
    return cert


def verify_transmission(
    cert: x509.Certificate, message: bytes, signature_b64: str, now: datetime
) -> bool:
    """Whether ``signature_b64`` is the certificate holder's signature of ``message``, the
    certificate being valid at ``now``."""
    if not cert.not_valid_before_utc <= now <= cert.not_valid_after_utc:
        return False
    key = cert.public_key()
    if not isinstance(key, rsa.RSAPublicKey):
        return False
    try:
        signature = base64.b64decode(signature_b64, validate=True)
        key.verify(signature, message, padding.PKCS1v15(), hashes.SHA256())
    except (InvalidSignature, ValueError):
        return False
    return True


def webhook_event(
    event_id: str,
    event_type: str,
    summary: str,
    resource_type: str,
    resource: dict[str, Any],
    created_at: datetime,
    base_url: str,
) -> dict[str, Any]:
    """The event envelope PayPal POSTs; ``resource`` is the order, capture or refund as the REST
    API shows it."""
    return {
        "id": event_id,
        "event_version": "1.0",
        "create_time": format_time(created_at),
        "resource_type": resource_type,
        "resource_version": "2.0",
        "event_type": event_type,
        "summary": summary,
        "resource": resource,
        "links": [
            {
                "href": f"{base_url}/v1/notifications/webhooks-events/{event_id}",
                "rel": "self",
                "method": "GET",
            },
            {
                "href": f"{base_url}/v1/notifications/webhooks-events/{event_id}/resend",
                "rel": "resend",
                "method": "POST",
            },
        ],
    }
