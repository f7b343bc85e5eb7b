"""Who is calling, and is this request new: signature, time window, nonce, idempotency.

Runs before any handler, in its own short transactions, so a refused request changes nothing
but the nonce table (and a refused request's nonce is not even kept).
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Engine, delete, select, update
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError

from clearhouse.api import signing
from clearhouse.clock import Clock
from clearhouse.db.schema import api_idempotency, api_nonces
from clearhouse.db.transaction import run_in_transaction
from clearhouse.errors import ClearhouseError
from clearhouse.gateway.merchants import active_merchant, key_secret
from clearhouse.sealing import Sealer

MAX_NONCE = 64
_HEX64 = re.compile(r"[0-9a-fA-F]{64}")
MAX_IDEMPOTENCY_KEY = 128
# A first request that has not finished in this long is taken to have died with its process;
# a retry may then run it again (payments are idempotent on the merchant order id anyway).
IN_FLIGHT_LEASE = timedelta(seconds=60)


class Refused(ClearhouseError):
    """A request refused before any handler ran; ``code`` is one of api.errors'."""


@dataclass(frozen=True, slots=True)
class Caller:
    merchant_id: str
    key_id: str
    request_key: str | None = None  # the POST's Idempotency-Key, for handlers that keep it


def authenticate(
    engine: Engine,
    sealer: Sealer,
    clock: Clock,
    method: str,
    path: str,
    headers: dict[str, str],
    body: bytes,
) -> Caller:
    key_id = headers.get(signing.KEY_HEADER.lower())
    timestamp = headers.get(signing.TIMESTAMP_HEADER.lower())
    nonce = headers.get(signing.NONCE_HEADER.lower())
    signature = headers.get(signing.SIGNATURE_HEADER.lower())
    if not (key_id and timestamp and nonce and signature):
        raise Refused(
            "sign every request: Clearhouse-Key, -Timestamp, -Nonce and -Signature",
            code="UNAUTHENTICATED",
        )
    if (
        not (timestamp.isascii() and timestamp.isdigit() and len(timestamp) <= 12)
        or not _HEX64.fullmatch(signature)
        or len(nonce) > MAX_NONCE
        or len(key_id) > 40
    ):
        raise Refused("malformed signing headers", code="UNAUTHENTICATED")
    now = clock.now()
    if abs(now.timestamp() - int(timestamp)) > signing.WINDOW_SECONDS:
        raise Refused(
            f"timestamp outside the {signing.WINDOW_SECONDS}-second window",
            code="STALE_TIMESTAMP",
            server_time=int(now.timestamp()),
        )

    def work(conn: Connection) -> Caller:
        found = key_secret(conn, sealer, key_id)
        if found is None:
            raise Refused("unknown or revoked API key", code="UNKNOWN_API_KEY")
        merchant_id, secret = found
        if not signing.verify(secret, signature, method, path, timestamp, nonce, body):
            raise Refused("signature does not match the request", code="BAD_SIGNATURE")
        active_merchant(conn, merchant_id)
        seen = conn.execute(
            select(api_nonces.c.nonce).where(
                api_nonces.c.key_id == key_id, api_nonces.c.nonce == nonce
            )
        ).first()
        if seen is not None:
            raise Refused("nonce already used", code="NONCE_REUSED")
        conn.execute(api_nonces.insert().values(key_id=key_id, nonce=nonce, seen_at=now))
        return Caller(merchant_id, key_id)

    try:
        return run_in_transaction(engine, work)
    except IntegrityError as exc:  # the same nonce raced in twice: one of them is a replay
        raise Refused("nonce already used", code="NONCE_REUSED") from exc


def prune_nonces(engine: Engine, now: datetime) -> int:
    """Forget nonces older than the window: their timestamps are refused anyway."""
    cutoff = now - timedelta(seconds=2 * signing.WINDOW_SECONDS)
    with engine.begin() as conn:
        return conn.execute(delete(api_nonces).where(api_nonces.c.seen_at < cutoff)).rowcount


@dataclass(frozen=True, slots=True)
class Replay:
    status_code: int
    body: str


def begin_idempotent(
    engine: Engine,
    clock: Clock,
    caller: Caller,
    key: str | None,
    request: bytes,
    sealer: Sealer | None = None,
) -> Replay | None:
    """Claim the key for this request, or return the stored answer of its first run.

    Only a digest of the request is kept, never the request. With ``sealer`` the digest is
    keyed by the server's secret: a body holding card data (a card number with its CVV, an ID
    number) cannot be found from its digest by trying the few values a CVV can take."""
    if not key:
        raise Refused(
            "send an Idempotency-Key header on every POST", code="IDEMPOTENCY_KEY_REQUIRED"
        )
    if len(key) > MAX_IDEMPOTENCY_KEY:
        raise Refused("Idempotency-Key is too long", code="IDEMPOTENCY_KEY_REQUIRED")
    digest = (
        hashlib.sha256(request).digest()
        if sealer is None
        else sealer.digest(request, "api.idempotency")
    )
    now = clock.now()

    def work(conn: Connection) -> Replay | None:
        row = conn.execute(
            select(api_idempotency)
            .where(
                api_idempotency.c.merchant_id == caller.merchant_id, api_idempotency.c.key == key
            )
            .with_for_update()
        ).first()
        if row is None:
            conn.execute(
                api_idempotency.insert().values(
                    merchant_id=caller.merchant_id,
                    key=key,
                    request_hash=digest,
                    state="in_flight",
                    created_at=now,
                    locked_until=now + IN_FLIGHT_LEASE,
                )
            )
            return None
        if bytes(row.request_hash) != digest:
            raise Refused(
                "this Idempotency-Key was used for a different request",
                code="IDEMPOTENCY_KEY_REUSED",
            )
        if row.state == "done":
            return Replay(row.status_code, row.response)
        if row.locked_until > now:
            raise Refused(
                "the first request with this key is still running", code="IDEMPOTENCY_IN_FLIGHT"
            )
        conn.execute(
            update(api_idempotency)
            .where(
                api_idempotency.c.merchant_id == caller.merchant_id, api_idempotency.c.key == key
            )
            .values(locked_until=now + IN_FLIGHT_LEASE)
        )
        return None

    return run_in_transaction(engine, work, retry_integrity=True)


def finish_idempotent(
    engine: Engine, caller: Caller, key: str, status_code: int, body: str
) -> None:
    """Store the answer; a server fault instead releases the key so a retry runs again."""
    where: Any = (api_idempotency.c.merchant_id == caller.merchant_id) & (
        api_idempotency.c.key == key
    )
    with engine.begin() as conn:
        if status_code >= 500:
            conn.execute(delete(api_idempotency).where(where))
        else:
            conn.execute(
                update(api_idempotency)
                .where(where)
                .values(state="done", status_code=status_code, response=body, locked_until=None)
            )
