"""Merchant webhooks: outbox events delivered at least once, signed, retried with backoff,
every try logged, and any event re-sendable by hand.

Signature: ``Clearhouse-Webhook-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256>`` over
``"<t>.<body>"`` with the merchant's webhook secret; receivers check the HMAC and that ``t`` is
recent (Stripe's scheme, which merchants' tooling already knows).
"""

from __future__ import annotations

import hashlib
import hmac
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import httpx
from sqlalchemy import Engine, select, update

from clearhouse.clock import Clock
from clearhouse.db.schema import merchants, outbox, webhook_deliveries
from clearhouse.errors import ClearhouseError
from clearhouse.gateway.merchants import WEBHOOK_SECRET
from clearhouse.sealing import Sealer

SIGNATURE_HEADER = "Clearhouse-Webhook-Signature"
# Waits after each failed try; after the last the event is marked failed (and can be re-sent).
BACKOFF = tuple(
    timedelta(seconds=s) for s in (10, 30, 60, 300, 900, 1800, 3600, 7200, 14400, 28800)
)
TOLERANCE_SECONDS = 300


class DeliveryNotFound(ClearhouseError):
    code = "DELIVERY_NOT_FOUND"


def signature_header(secret: bytes, body: bytes, timestamp: int) -> str:
    mac = hmac.new(secret, f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={mac}"


def verify_signature(secret: bytes, body: bytes, header: str, now: int) -> bool:
    """What a merchant's receiver does: HMAC matches and the timestamp is recent."""
    parts = dict(p.split("=", 1) for p in header.split(",") if "=" in p)
    try:
        timestamp = int(parts["t"])
    except (KeyError, ValueError):
        return False
    if abs(now - timestamp) > TOLERANCE_SECONDS:
        return False
    expected = signature_header(secret, body, timestamp).split(",", 1)[1].removeprefix("v1=")
    return hmac.compare_digest(expected, parts.get("v1", ""))


@dataclass(frozen=True, slots=True)
class DeliveryReport:
    tried: int
    delivered: int


class Webhooks:
    def __init__(
        self,
        engine: Engine,
        clock: Clock,
        sealer: Sealer,
        client: httpx.Client | None = None,
    ) -> None:
        self.engine = engine
        self.clock = clock
        self.sealer = sealer
        self.client = client or httpx.Client(timeout=httpx.Timeout(5.0, connect=2.0))

    def deliver_due(self, limit: int = 100) -> DeliveryReport:
        now = self.clock.now()
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(outbox.c.id)
                .where(outbox.c.delivery_state == "pending", outbox.c.next_attempt_at <= now)
                .order_by(outbox.c.id)
                .limit(limit)
            ).scalars()
            ids = list(rows)
        delivered = sum(self._deliver(event_id, manual=False) for event_id in ids)
        return DeliveryReport(len(ids), delivered)

    def resend(self, merchant_id: str, event_id: int) -> bool:
        """Deliver an event again now, whatever its state (a merchant fixed its endpoint)."""
        with self.engine.connect() as conn:
            owner = conn.execute(
                select(outbox.c.merchant_id).where(outbox.c.id == event_id)
            ).scalar()
        if owner != merchant_id:
            raise DeliveryNotFound(f"no event {event_id}", event_id=event_id)
        return self._deliver(event_id, manual=True)

    def _deliver(self, event_id: int, *, manual: bool) -> bool:
        with self.engine.connect() as conn:
            event = conn.execute(select(outbox).where(outbox.c.id == event_id)).one()
            merchant = conn.execute(
                select(merchants.c.webhook_url, merchants.c.webhook_secret_sealed).where(
                    merchants.c.id == event.merchant_id
                )
            ).one()
        now = self.clock.now()
        if not merchant.webhook_url:
            self._settle(event_id, event.attempts, now, delivered=True, manual=manual)
            return False
        body = (
            f'{{"id":{event.id},"type":"{event.type}","created_at":'
            f'"{event.created_at.isoformat()}","data":{event.payload}}}'
        ).encode()
        secret = self.sealer.unseal(merchant.webhook_secret_sealed, WEBHOOK_SECRET)
        headers = {
            "Content-Type": "application/json",
            SIGNATURE_HEADER: signature_header(secret, body, int(now.timestamp())),
            "Clearhouse-Event-Id": str(event.id),
        }
        started = time.perf_counter()
        status_code: int | None = None
        error: str | None = None
        try:
            response = self.client.post(merchant.webhook_url, content=body, headers=headers)
            status_code = response.status_code
        except httpx.HTTPError as exc:
            error = f"{type(exc).__name__}: {exc}"[:200]
        ok = status_code is not None and 200 <= status_code < 300
        with self.engine.begin() as conn:
            conn.execute(
                webhook_deliveries.insert().values(
                    event_id=event_id,
                    url=merchant.webhook_url,
                    status_code=status_code,
                    error=error,
                    duration_ms=int((time.perf_counter() - started) * 1000),
                    manual=manual,
                    at=now,
                )
            )
        self._settle(event_id, event.attempts, now, delivered=ok, manual=manual)
        return ok

    def _settle(
        self, event_id: int, attempts: int, now: datetime, *, delivered: bool, manual: bool
    ) -> None:
        # ``attempts`` counts automatic tries only: it is the position in BACKOFF, so a manual
        # re-send, failed or not, leaves the automatic schedule as it was.
        values: dict[str, Any] = {} if manual else {"attempts": attempts + 1}
        if delivered:
            values |= {"delivery_state": "delivered", "next_attempt_at": None}
        elif manual:
            return
        elif attempts < len(BACKOFF):
            values["next_attempt_at"] = now + BACKOFF[attempts]
        else:
            values |= {"delivery_state": "failed", "next_attempt_at": None}
        with self.engine.begin() as conn:
            conn.execute(update(outbox).where(outbox.c.id == event_id).values(values))

    def deliveries(self, merchant_id: str, event_id: int) -> list[dict[str, Any]]:
        with self.engine.connect() as conn:
            owner = conn.execute(
                select(outbox.c.merchant_id).where(outbox.c.id == event_id)
            ).scalar()
            if owner != merchant_id:
                raise DeliveryNotFound(f"no event {event_id}", event_id=event_id)
            rows = conn.execute(
                select(webhook_deliveries)
                .where(webhook_deliveries.c.event_id == event_id)
                .order_by(webhook_deliveries.c.id)
            ).mappings()
            return [dict(r) for r in rows]

    def events(self, merchant_id: str, after: int = 0, limit: int = 100) -> list[dict[str, Any]]:
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(outbox)
                .where(outbox.c.merchant_id == merchant_id, outbox.c.id > after)
                .order_by(outbox.c.id)
                .limit(limit)
            ).mappings()
            return [dict(r) for r in rows]
