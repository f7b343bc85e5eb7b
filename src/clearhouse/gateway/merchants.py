"""Merchants and their API keys: opened with their ledger accounts, keys issued once and kept
sealed (ADR 0004)."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select, update
from sqlalchemy.engine import Connection

from clearhouse.accounts.handlers import open_holder
from clearhouse.accounts.model import CustomerKind, KycLevel, Role
from clearhouse.db.schema import api_keys, merchants
from clearhouse.gateway.errors import GatewayError, MerchantNotActive
from clearhouse.ids import new_id
from clearhouse.ledger.chart import Chart
from clearhouse.sealing import Sealer

API_SECRET = "api-key-secret"
WEBHOOK_SECRET = "webhook-secret"


class UnknownMerchant(GatewayError):
    code = "UNKNOWN_MERCHANT"


@dataclass(frozen=True, slots=True)
class Merchant:
    id: str
    name: str
    status: str
    account_id: str
    currency: str
    commission_bps: int
    webhook_url: str | None
    webhook_secret_sealed: bytes
    parent_id: str | None = None  # the marketplace this merchant sells on


@dataclass(frozen=True, slots=True)
class IssuedKey:
    """Shown once, at issue: the secret is not readable through any API afterwards."""

    key_id: str
    secret: str
    merchant_id: str


def create_merchant(
    conn: Connection,
    chart: Chart,
    sealer: Sealer,
    *,
    name: str,
    currency: str,
    commission_bps: int,
    webhook_url: str | None,
    pii_key: bytes,
    now: datetime,
    parent_id: str | None = None,
) -> tuple[Merchant, IssuedKey, str]:
    """A merchant with its ledger accounts, a first API key and a webhook secret; with
    ``parent_id``, a seller on that marketplace (which may take combined payments for it)."""
    if not 0 <= commission_bps <= 10_000:
        raise GatewayError("commission_bps must be within 0..10000", code="INVALID_MERCHANT")
    if parent_id is not None and load_merchant(conn, parent_id).currency != currency:
        raise GatewayError("a seller trades in its marketplace's currency", code="INVALID_MERCHANT")
    merchant_id = new_id("mer")
    holder = open_holder(
        conn,
        chart,
        name=name,
        login=f"merchant:{merchant_id}",
        kind=CustomerKind.COMPANY,
        kyc_level=KycLevel.CLASS_III,
        roles=[Role.MERCHANT_SETTLEMENT, Role.MERCHANT_DEPOSIT],
        currency=currency,
        pii_key=pii_key,
        now=now,
    )
    webhook_secret = "whsec_" + secrets.token_urlsafe(32)
    row: dict[str, object] = {
        "id": merchant_id,
        "name": name,
        "status": "active",
        "account_id": holder.account_id,
        "currency": currency,
        "commission_bps": commission_bps,
        "webhook_url": webhook_url,
        "webhook_secret_sealed": sealer.seal(webhook_secret.encode(), WEBHOOK_SECRET),
        "created_at": now,
        "parent_id": parent_id,
    }
    conn.execute(merchants.insert().values(row))
    key = issue_key(conn, sealer, merchant_id, now)
    return load_merchant(conn, merchant_id), key, webhook_secret


def issue_key(conn: Connection, sealer: Sealer, merchant_id: str, now: datetime) -> IssuedKey:
    key_id = new_id("ak")
    secret = "sk_" + secrets.token_urlsafe(32)
    conn.execute(
        api_keys.insert().values(
            id=key_id,
            merchant_id=merchant_id,
            secret_sealed=sealer.seal(secret.encode(), API_SECRET),
            status="active",
            created_at=now,
        )
    )
    return IssuedKey(key_id, secret, merchant_id)


def load_merchant(conn: Connection, merchant_id: str) -> Merchant:
    row = conn.execute(select(merchants).where(merchants.c.id == merchant_id)).mappings().first()
    if row is None:
        raise UnknownMerchant(f"no merchant {merchant_id!r}")
    return Merchant(**{k: v for k, v in row.items() if k != "created_at"})


def active_merchant(conn: Connection, merchant_id: str) -> Merchant:
    merchant = load_merchant(conn, merchant_id)
    if merchant.status != "active":
        raise MerchantNotActive(f"merchant {merchant_id} is {merchant.status}")
    return merchant


def set_status(conn: Connection, merchant_id: str, status: str) -> None:
    if status not in ("active", "suspended"):
        raise GatewayError(f"unknown merchant status {status!r}", code="INVALID_MERCHANT")
    done = conn.execute(
        update(merchants).where(merchants.c.id == merchant_id).values(status=status)
    )
    if done.rowcount == 0:
        raise UnknownMerchant(f"no merchant {merchant_id!r}")


def key_secret(conn: Connection, sealer: Sealer, key_id: str) -> tuple[str, bytes] | None:
    """(merchant id, secret) of an active key, or None: the caller answers the same way for an
    unknown and a revoked key."""
    row = conn.execute(
        select(api_keys.c.merchant_id, api_keys.c.secret_sealed).where(
            api_keys.c.id == key_id, api_keys.c.status == "active"
        )
    ).first()
    if row is None:
        return None
    return row.merchant_id, sealer.unseal(row.secret_sealed, API_SECRET)
