"""Rows of the gateway's tables as values, and the writes every flow shares: the flow record
(P3) and locked reads of an intent and its attempt."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import or_, select
from sqlalchemy.engine import Connection

from clearhouse.db.schema import (
    merchants,
    payment_attempts,
    payment_events,
    payment_intents,
    refunds,
)
from clearhouse.gateway.errors import PaymentNotFound, RefundNotFound
from clearhouse.gateway.model import (
    AttemptStatus,
    IntentStatus,
    RefundStatus,
    Settlement,
)
from clearhouse.money import Money


@dataclass(frozen=True, slots=True)
class Intent:
    id: str
    merchant_id: str
    merchant_order_id: str
    amount: Money
    description: str
    settlement: Settlement
    commission: Money
    status: IntentStatus
    request_hash: bytes
    expires_at: datetime
    succeeded_attempt_id: str | None
    fee: Money | None
    refunded: Money
    refund_count: int
    paid_at: datetime | None
    created_at: datetime
    updated_at: datetime
    group_id: str | None = None
    purpose: str = "order"  # or "topup" (payments.ORDER, payments.TOPUP)
    payer_account_id: str | None = None  # a top-up's buyer account

    @classmethod
    def from_row(cls, row: Any) -> Intent:
        cur = row.currency
        return cls(
            id=row.id,
            merchant_id=row.merchant_id,
            merchant_order_id=row.merchant_order_id,
            amount=Money(row.amount, cur),
            description=row.description,
            settlement=Settlement(row.settlement),
            commission=Money(row.commission, cur),
            status=IntentStatus(row.status),
            request_hash=bytes(row.request_hash),
            expires_at=row.expires_at,
            succeeded_attempt_id=row.succeeded_attempt_id,
            fee=None if row.fee is None else Money(row.fee, cur),
            refunded=Money(row.refunded, cur),
            refund_count=row.refund_count,
            paid_at=row.paid_at,
            created_at=row.created_at,
            updated_at=row.updated_at,
            group_id=row.group_id,
            purpose=row.purpose,
            payer_account_id=row.payer_account_id,
        )


@dataclass(frozen=True, slots=True)
class Attempt:
    id: str
    intent_id: str
    channel: str
    method: str
    payer_id: str | None
    status: AttemptStatus
    channel_txn_id: str | None
    credential: str | None
    error_code: str | None
    next_poll_at: datetime | None
    polls: int
    created_at: datetime
    amount: int | None = None  # minor units asked of the channel; None: the intent's amount
    group_id: str | None = None

    @classmethod
    def from_row(cls, row: Any) -> Attempt:
        return cls(
            id=row.id,
            intent_id=row.intent_id,
            channel=row.channel,
            method=row.method,
            payer_id=row.payer_id,
            status=AttemptStatus(row.status),
            channel_txn_id=row.channel_txn_id,
            credential=row.credential,
            error_code=row.error_code,
            next_poll_at=row.next_poll_at,
            polls=row.polls,
            created_at=row.created_at,
            amount=row.amount,
            group_id=row.group_id,
        )


@dataclass(frozen=True, slots=True)
class Refund:
    id: str
    intent_id: str
    attempt_id: str
    amount: Money
    fee_returned: Money
    commission_returned: Money
    settled: bool
    hold_entry_id: int | None
    request_key: str | None
    reason: str
    status: RefundStatus
    channel_refund_id: str | None
    error_code: str | None
    created_at: datetime
    next_poll_at: datetime | None
    polls: int
    balance_part: Money | None = None  # of a mixed payment: back to the payer's balance
    balance_hold_entry_id: int | None = None

    @property
    def channel_part(self) -> Money:
        """What the channel refunds (all of it, unless part goes back to a balance)."""
        return self.amount if self.balance_part is None else self.amount - self.balance_part

    @classmethod
    def from_row(cls, row: Any) -> Refund:
        return cls(
            id=row.id,
            intent_id=row.intent_id,
            attempt_id=row.attempt_id,
            amount=Money(row.amount, row.currency),
            fee_returned=Money(row.fee_returned, row.currency),
            commission_returned=Money(row.commission_returned, row.currency),
            settled=bool(row.settled),
            hold_entry_id=row.hold_entry_id,
            request_key=row.request_key,
            reason=row.reason,
            status=RefundStatus(row.status),
            channel_refund_id=row.channel_refund_id,
            error_code=row.error_code,
            created_at=row.created_at,
            next_poll_at=row.next_poll_at,
            polls=row.polls,
            balance_part=Money(row.balance_part, row.currency),
            balance_hold_entry_id=row.balance_hold_entry_id,
        )


def intent(conn: Connection, intent_id: str, *, lock: bool = False) -> Intent:
    query = select(payment_intents).where(payment_intents.c.id == intent_id)
    row = conn.execute(query.with_for_update() if lock else query).first()
    if row is None:
        raise PaymentNotFound(f"no payment {intent_id!r}", payment_id=intent_id)
    return Intent.from_row(row)


def merchant_intent(conn: Connection, merchant_id: str, intent_id: str) -> Intent:
    """The intent, if it belongs to this merchant or to one of its sub-merchants (a
    marketplace acts for its sellers): another merchant's payment is not found."""
    found = intent(conn, intent_id)
    if found.merchant_id != merchant_id and not is_parent(conn, merchant_id, found.merchant_id):
        raise PaymentNotFound(f"no payment {intent_id!r}", payment_id=intent_id)
    return found


def is_parent(conn: Connection, parent_id: str, merchant_id: str) -> bool:
    row = conn.execute(select(merchants.c.parent_id).where(merchants.c.id == merchant_id)).first()
    return row is not None and row.parent_id == parent_id


def attempt_amount(attempt: Attempt, intent: Intent) -> Money:
    """What the attempt asks of the channel: a combined payment's total, a mixed payment's
    channel part, or the intent's amount."""
    if attempt.amount is None:
        return intent.amount
    return Money(attempt.amount, intent.amount.currency)


def group_intents(conn: Connection, group_id: str, *, lock: bool = False) -> list[Intent]:
    """A group's orders, in id order (one lock order for every writer)."""
    query = (
        select(payment_intents)
        .where(payment_intents.c.group_id == group_id)
        .order_by(payment_intents.c.id)
    )
    return [Intent.from_row(r) for r in conn.execute(query.with_for_update() if lock else query)]


def attempt(conn: Connection, attempt_id: str, *, lock: bool = False) -> Attempt | None:
    query = select(payment_attempts).where(payment_attempts.c.id == attempt_id)
    row = conn.execute(query.with_for_update() if lock else query).first()
    return None if row is None else Attempt.from_row(row)


def attempts_of(conn: Connection, intent_id: str) -> list[Attempt]:
    # A combined payment's orders share their group's attempt.
    group = select(payment_intents.c.group_id).where(payment_intents.c.id == intent_id)
    rows = conn.execute(
        select(payment_attempts)
        .where(
            or_(
                payment_attempts.c.intent_id == intent_id,
                payment_attempts.c.group_id == group.scalar_subquery(),
            )
        )
        .order_by(payment_attempts.c.created_at, payment_attempts.c.id)
    )
    return [Attempt.from_row(r) for r in rows]


def refund(conn: Connection, refund_id: str, *, lock: bool = False) -> Refund:
    query = select(refunds).where(refunds.c.id == refund_id)
    row = conn.execute(query.with_for_update() if lock else query).first()
    if row is None:
        raise RefundNotFound(f"no refund {refund_id!r}", refund_id=refund_id)
    return Refund.from_row(row)


def refunds_of(conn: Connection, intent_id: str) -> list[Refund]:
    rows = conn.execute(
        select(refunds).where(refunds.c.intent_id == intent_id).order_by(refunds.c.created_at)
    )
    return [Refund.from_row(r) for r in rows]


def record(
    conn: Connection,
    now: datetime,
    intent_id: str,
    kind: str,
    detail: str,
    *,
    attempt_id: str | None = None,
    refund_id: str | None = None,
    status: str | None = None,
) -> None:
    """Append to the payment flow record: requests, channel answers, notifications, changes."""
    conn.execute(
        payment_events.insert().values(
            intent_id=intent_id,
            attempt_id=attempt_id,
            refund_id=refund_id,
            kind=kind,
            status=status,
            detail=detail,
            at=now,
        )
    )
