"""Alipay OpenAPI key material: the app's key pair and Alipay's (platform) key pair.

The merchant holds the app private key and Alipay's public key; Alipay holds the app public key
and its own private key. The sandbox plays Alipay, so it needs the platform private key; what a
merchant deployment gets is ``merchant_view()``, which drops it.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, replace
from typing import Any

from cryptography.hazmat.primitives import serialization

from clearhouse.errors import ConfigurationError
from clearhouse.gateway.channels import keys


def _digits(prefix: str, length: int) -> str:
    return prefix + "".join(secrets.choice("0123456789") for _ in range(length - len(prefix)))


@dataclass(frozen=True, slots=True)
class AlipayCredentials:
    app_id: str  # the OpenAPI application id (16 digits)
    pid: str  # the merchant's partner id / seller_id (16 digits, 2088...)
    app_private_key_pem: str | None  # signs our requests (merchant side only)
    app_public_key_pem: str  # verifies our requests (uploaded to Alipay)
    alipay_private_key_pem: str | None  # signs Alipay's answers (sandbox side only)
    alipay_public_key_pem: str  # verifies Alipay's answers and notifications

    @classmethod
    def generate(cls, app_id: str | None = None, pid: str | None = None) -> AlipayCredentials:
        app_private, app_public = keys.new_key_pair()
        alipay_private, alipay_public = keys.new_key_pair()
        return cls(
            app_id=app_id or _digits("2021", 16),
            pid=pid or _digits("2088", 16),
            app_private_key_pem=app_private,
            app_public_key_pem=app_public,
            alipay_private_key_pem=alipay_private,
            alipay_public_key_pem=alipay_public,
        )

    def merchant_view(self) -> AlipayCredentials:
        """What a merchant may hold: everything but Alipay's private key."""
        return replace(self, alipay_private_key_pem=None)

    def require_app_private_key(self) -> str:
        if self.app_private_key_pem is None:
            raise ConfigurationError("Alipay credentials lack the app private key")
        return self.app_private_key_pem

    def require_alipay_private_key(self) -> str:
        if self.alipay_private_key_pem is None:
            raise ConfigurationError("Alipay credentials lack the platform private key")
        return self.alipay_private_key_pem

    def to_dict(self) -> dict[str, str | None]:
        return {
            "app_id": self.app_id,
            "pid": self.pid,
            "app_private_key_pem": self.app_private_key_pem,
            "app_public_key_pem": self.app_public_key_pem,
            "alipay_private_key_pem": self.alipay_private_key_pem,
            "alipay_public_key_pem": self.alipay_public_key_pem,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> AlipayCredentials:
        try:
            return cls(
                app_id=str(data["app_id"]),
                pid=str(data["pid"]),
                app_private_key_pem=_optional_pem(data.get("app_private_key_pem")),
                app_public_key_pem=to_pem(str(data["app_public_key_pem"]), public=True),
                alipay_private_key_pem=_optional_pem(data.get("alipay_private_key_pem")),
                alipay_public_key_pem=to_pem(str(data["alipay_public_key_pem"]), public=True),
            )
        except KeyError as exc:
            raise ConfigurationError(f"Alipay credentials miss {exc.args[0]!r}") from exc


def _optional_pem(value: object) -> str | None:
    return None if value in (None, "") else to_pem(str(value), public=False)


def to_pem(key: str, *, public: bool) -> str:
    """Accept PEM or the bare base64 body Alipay's console and key tool show, and return PEM.

    A bare private key is read as PKCS#8 (what the key tool exports) and, failing that, PKCS#1."""
    text = key.strip()
    if text.startswith("-----BEGIN"):
        return text + "\n"
    body = "".join(text.split())
    lines = "\n".join(body[i : i + 64] for i in range(0, len(body), 64))
    label = "PUBLIC KEY" if public else "PRIVATE KEY"
    pem = f"-----BEGIN {label}-----\n{lines}\n-----END {label}-----\n"
    if not public:
        try:
            serialization.load_pem_private_key(pem.encode("ascii"), password=None)
        except ValueError:
            pem = pem.replace("PRIVATE KEY", "RSA PRIVATE KEY")
    return pem
