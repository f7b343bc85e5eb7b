"""Stripe API v1 wire rules, shared by the adapter and the sandbox.

- Requests are form-encoded with brackets: ``metadata[order]=x``, ``expand[0]=latest_charge``
  (``expand[]=`` is accepted too); answers are JSON; amounts are integers of the currency's
  smallest unit, currencies lowercase.
- Errors are ``{"error": {"type", "code", "message", ...}}`` with the HTTP status saying the kind
  (400 bad request, 401 key, 402 card declined, 404 missing, 409 conflict, 429, 5xx).
- A webhook carries ``Stripe-Signature: t=<unix seconds>,v1=<hex>[,v1=<hex>...]``: the HMAC-SHA256
  of ``"<t>.<raw body>"`` under the endpoint's ``whsec_`` secret. Several ``v1`` entries appear
  while a secret is being rolled; any one matching is enough. A timestamp more than
  ``TOLERANCE`` away from now is refused: it bounds replays.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import secrets
import string
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any
from urllib.parse import parse_qsl, urlencode

from clearhouse.errors import ClearhouseError, ConfigurationError

TOLERANCE = timedelta(seconds=300)
SIGNATURE_HEADER = "Stripe-Signature"
# The API version our parsing was written against; every request pins it.
API_VERSION = "2026-10-28.endive"
# The events the adapter turns into notifications: what a merchant's endpoint subscribes to.
HANDLED_EVENTS = (
    "payment_intent.succeeded",
    "payment_intent.payment_failed",
    "payment_intent.canceled",
    "refund.created",
    "refund.updated",
    "refund.failed",
)


class StripeProtocolError(ClearhouseError):
    code = "STRIPE_PROTOCOL_ERROR"


class SignatureError(StripeProtocolError):
    """A webhook signature, its header or its timestamp do not verify."""

    code = "BAD_SIGNATURE"


# --- credentials -------------------------------------------------------------------------------


def _token(length: int) -> str:
    alphabet = string.ascii_letters + string.digits
    return "".join(secrets.choice(alphabet) for _ in range(length))


@dataclass(frozen=True, slots=True)
class StripeCredentials:
    """Stripe's secrets are shared, not key pairs: the secret key authenticates our requests and
    the endpoint secret signs webhooks, and both the merchant and Stripe (the sandbox) hold both.
    ``merchant_view()`` exists for symmetry with the other channels and drops nothing."""

    account_id: str  # acct_...: names the account in reports and events
    secret_key: str  # sk_test_... / sk_live_...
    publishable_key: str  # pk_test_...: for the payer's browser (tokenising cards)
    webhook_secret: str  # whsec_...: of the merchant's notification endpoint

    def __post_init__(self) -> None:
        if not self.secret_key.startswith(("sk_", "rk_")):
            raise ConfigurationError("a Stripe secret key starts with sk_ (or rk_ if restricted)")
        if not self.webhook_secret.startswith("whsec_"):
            raise ConfigurationError("a Stripe endpoint secret starts with whsec_")

    @classmethod
    def generate(cls) -> StripeCredentials:
        """Fresh test-mode keys (never live: the sandbox answers ``livemode: false``)."""
        return cls(
            account_id=f"acct_{_token(16)}",
            secret_key=f"sk_test_{_token(99)}",
            publishable_key=f"pk_test_{_token(99)}",
            webhook_secret=f"whsec_{_token(32)}",
        )

    def merchant_view(self) -> StripeCredentials:
        return self

    def to_dict(self) -> dict[str, str]:
        return {
            "account_id": self.account_id,
            "secret_key": self.secret_key,
            "publishable_key": self.publishable_key,
            "webhook_secret": self.webhook_secret,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> StripeCredentials:
        try:
            return cls(
                account_id=str(data["account_id"]),
                secret_key=str(data["secret_key"]),
                publishable_key=str(data.get("publishable_key", "")),
                webhook_secret=str(data["webhook_secret"]),
            )
        except KeyError as exc:
            raise ConfigurationError(f"Stripe credentials miss {exc.args[0]!r}") from exc


def new_webhook_secret() -> str:
    return f"whsec_{_token(32)}"


# --- webhook signatures ------------------------------------------------------------------------


def compute_signature(payload: bytes, secret: str, timestamp: int) -> str:
    signed = f"{timestamp}.".encode() + payload
    return hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest()


def signature_header(payload: bytes, secret: str, now: datetime) -> str:
    timestamp = int(now.timestamp())
    return f"t={timestamp},v1={compute_signature(payload, secret, timestamp)}"


def verify_signature(
    payload: bytes,
    header: str,
    secret: str,
    now: datetime,
    tolerance: timedelta = TOLERANCE,
) -> int:
    """Check a ``Stripe-Signature`` header; return its timestamp or raise ``SignatureError``."""
    timestamp: int | None = None
    candidates: list[str] = []
    for item in header.split(","):
        key, sep, value = item.strip().partition("=")
        if not sep:
            continue
        if key == "t" and value.isdigit():
            timestamp = int(value)
        elif key == "v1":
            candidates.append(value)
    if timestamp is None:
        raise SignatureError("signature header without a timestamp")
    if not candidates:
        raise SignatureError("signature header without a v1 signature")
    signed_at = datetime.fromtimestamp(timestamp, UTC)
    if abs(now - signed_at) > tolerance:
        raise SignatureError("timestamp outside the tolerance", timestamp=timestamp)
    expected = compute_signature(payload, secret, timestamp)
    # Every candidate is compared, in constant time each, so timing says nothing about which.
    matches = [hmac.compare_digest(expected, candidate) for candidate in candidates]
    if not any(matches):
        raise SignatureError("no signature matches the payload")
    return timestamp


# --- form encoding -----------------------------------------------------------------------------


def form_pairs(params: Mapping[str, Any], prefix: str = "") -> list[tuple[str, str]]:
    """Stripe's bracket encoding: nested mappings as ``a[b]``, sequences as ``a[0]``, booleans
    as ``true``/``false``; ``None`` is left out."""
    pairs: list[tuple[str, str]] = []
    for key, value in params.items():
        name = f"{prefix}[{key}]" if prefix else str(key)
        pairs.extend(_encode_value(name, value))
    return pairs


def _encode_value(name: str, value: Any) -> Iterable[tuple[str, str]]:
    if value is None:
        return []
    if isinstance(value, Mapping):
        return form_pairs(value, name)
    if isinstance(value, list | tuple):
        out: list[tuple[str, str]] = []
        for index, item in enumerate(value):
            out.extend(_encode_value(f"{name}[{index}]", item))
        return out
    if isinstance(value, bool):
        return [(name, "true" if value else "false")]
    if isinstance(value, float):
        raise TypeError("floats are not sent to Stripe: amounts are integer minor units")
    return [(name, str(value))]


def encode_form(params: Mapping[str, Any]) -> str:
    # Brackets left readable, as Stripe's own libraries send them; the server decodes both.
    return urlencode(form_pairs(params)).replace("%5B", "[").replace("%5D", "]")


_SEGMENT = re.compile(r"\[([^\[\]]*)\]")
# Mappings whose keys are the merchant's own, never list indexes, however they look.
_FREE_KEYS = {"metadata", "parameters"}


def decode_form(body: str) -> dict[str, Any]:
    """The inverse of ``encode_form``; ``a[]`` appends. Raises ``StripeProtocolError`` for a
    name that is both a value and a container."""
    root: dict[str, Any] = {}
    for name, value in parse_qsl(body, keep_blank_values=True):
        head, _, rest = name.partition("[")
        path = [head, *_SEGMENT.findall("[" + rest)] if rest else [head]
        node = root
        for depth, segment in enumerate(path):
            last = depth == len(path) - 1
            key = segment or str(len(node))  # ``a[]`` appends
            if last:
                if isinstance(node.get(key), dict):
                    raise StripeProtocolError(f"parameter {name!r} conflicts with another")
                node[key] = value
                break
            child = node.setdefault(key, {})
            if not isinstance(child, dict):
                raise StripeProtocolError(f"parameter {name!r} conflicts with another")
            node = child
    return _listify(root, "")


def _listify(node: dict[str, Any], name: str) -> dict[str, Any] | Any:
    out = {k: _listify(v, k) if isinstance(v, dict) else v for k, v in node.items()}
    if name not in _FREE_KEYS and out and all(k.isdigit() for k in out):
        indexes = sorted(out, key=int)
        if [int(i) for i in indexes] == list(range(len(indexes))):
            return [out[i] for i in indexes]
    return out


# --- JSON --------------------------------------------------------------------------------------


def dumps(payload: Mapping[str, Any]) -> bytes:
    """JSON as Stripe writes it. A ``Decimal`` (an exchange rate) is written as the number it
    is, digit for digit: ``json`` alone would refuse it, and a float could change it."""
    numbers: list[str] = []
    mark = secrets.token_hex(8)  # no string in the payload can spell the placeholders

    def exact(value: object) -> str:
        if not isinstance(value, Decimal):
            raise TypeError(f"{type(value).__name__} is not JSON serializable")
        numbers.append(str(value))
        return f"{mark}:{len(numbers) - 1}"

    text = json.dumps(payload, ensure_ascii=False, indent=2, default=exact)
    for index, number in enumerate(numbers):
        text = text.replace(f'"{mark}:{index}"', number, 1)
    return text.encode()


def loads(content: bytes | str) -> Any:
    """JSON with its fractional numbers read exactly, as ``Decimal``."""
    return json.loads(content, parse_float=Decimal)


def error_body(kind: str, message: str, code: str | None = None, **extra: Any) -> bytes:
    error: dict[str, Any] = {"type": kind, "message": message}
    if code is not None:
        error["code"] = code
    error.update(extra)
    return dumps({"error": error})
