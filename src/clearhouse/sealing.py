"""Secrets at rest: sealed with AES-256-GCM under a key derived from the server's secret.

Used for what must be readable again (an API key's HMAC secret, a webhook signing secret), so a
copy of the database alone does not hand out working credentials. The purpose string binds each
sealed value to its use: an API secret cannot be unsealed as a webhook secret.
"""

from __future__ import annotations

import os

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes, hmac
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from clearhouse.errors import ClearhouseError

_VERSION = b"\x01"


class SealBroken(ClearhouseError):
    code = "SEAL_BROKEN"


class Sealer:
    def __init__(self, server_secret: bytes) -> None:
        key = HKDF(
            algorithm=hashes.SHA256(), length=32, salt=None, info=b"clearhouse-seal-v1"
        ).derive(server_secret)
        self._aead = AESGCM(key)
        # A key of its own for digests: a digest never reveals anything about the sealing key.
        self._digest_key = HKDF(
            algorithm=hashes.SHA256(), length=32, salt=None, info=b"clearhouse-digest-v1"
        ).derive(server_secret)

    def seal(self, plaintext: bytes, purpose: str) -> bytes:
        nonce = os.urandom(12)
        return _VERSION + nonce + self._aead.encrypt(nonce, plaintext, purpose.encode())

    def digest(self, value: bytes, purpose: str) -> bytes:
        """HMAC-SHA256 of ``value`` under a key derived from the server's secret: equal values
        give equal digests (to find a card again), yet a low-entropy value (a card number, a
        body holding a CVV) cannot be guessed from its digest without that secret."""
        mac = hmac.HMAC(self._digest_key, hashes.SHA256())
        mac.update(purpose.encode() + b"\x00" + value)
        return mac.finalize()

    def unseal(self, sealed: bytes, purpose: str) -> bytes:
        if sealed[:1] != _VERSION or len(sealed) < 29:
            raise SealBroken("sealed value has an unknown format")
        try:
            return self._aead.decrypt(sealed[1:13], sealed[13:], purpose.encode())
        except InvalidTag as exc:
            raise SealBroken("sealed value does not open with this server key") from exc
