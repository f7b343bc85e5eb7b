"""The parts of a mixed payment (P12) besides its channel attempt: the payer's balance and the
platform's subsidy. Each is reserved by a ledger hold when the payment is taken (so the balance
cannot be spent twice meanwhile), captured when the channel part succeeds, voided when it fails.
The channel part goes first because it is the one that may fail (the lower success rate);
the held parts then cannot, unless their hold ran out.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import TYPE_CHECKING

from sqlalchemy import select, update
from sqlalchemy.engine import Connection

from clearhouse.db.schema import payment_legs
from clearhouse.gateway import records
from clearhouse.gateway.errors import InvalidPayment, LedgerRefused
from clearhouse.ledger.model import Reason
from clearhouse.ledger.requests import CommitHold, Post, VoidHold
from clearhouse.money import Money

if TYPE_CHECKING:
    from clearhouse.gateway.payments import Payments


class LegMethod(StrEnum):
    BALANCE = "balance"  # the payer's balance (a buyer fund account)
    SUBSIDY = "subsidy"  # the platform's marketing subsidy


class LegStatus(StrEnum):
    HELD = "held"
    CAPTURED = "captured"
    VOIDED = "voided"


# Posting rules that move each part into the order's escrow.
LEG_CODES = {LegMethod.BALANCE: "1009", LegMethod.SUBSIDY: "7001"}


@dataclass(frozen=True, slots=True)
class LegRequest:
    method: LegMethod
    amount: Money
    account_id: str | None = None  # the payer's account, for a balance part


@dataclass(frozen=True, slots=True)
class Leg:
    intent_id: str
    method: LegMethod
    amount: Money
    account_id: str | None
    hold_entry_id: int | None
    status: LegStatus
    refunded: Money

    @property
    def refundable(self) -> Money:
        return self.amount - self.refunded


def of(conn: Connection, intent_id: str, currency: str) -> list[Leg]:
    rows = conn.execute(
        select(payment_legs)
        .where(payment_legs.c.intent_id == intent_id)
        .order_by(payment_legs.c.method)
    )
    return [
        Leg(
            intent_id=r.intent_id,
            method=LegMethod(r.method),
            amount=Money(r.amount, currency),
            account_id=r.account_id,
            hold_entry_id=r.hold_entry_id,
            status=LegStatus(r.status),
            refunded=Money(r.refunded, currency),
        )
        for r in rows
    ]


def total(conn: Connection, intent: records.Intent) -> Money:
    """What the held parts add up to (zero for a payment without them)."""
    cur = intent.amount.currency
    return sum((leg.amount for leg in of(conn, intent.id, cur)), Money.zero(cur))


def hold(
    payments: Payments,
    conn: Connection,
    intent_id: str,
    requests: list[LegRequest],
    expires_at: datetime,
) -> None:
    """Reserve each part in the ledger; a balance that cannot cover its part refuses the
    whole payment (the transaction rolls back: nothing is kept)."""
    for req in requests:
        parties = {"buyer": req.account_id} if req.method is LegMethod.BALANCE else {}
        key = f"pay:{intent_id}:{req.method.value}:hold"
        post = Post(
            key,
            LEG_CODES[req.method],
            req.amount.currency,
            {"amount": req.amount.amount},
            {k: v for k, v in parties.items() if v is not None},
            memo=intent_id,
            hold=True,
            expires_at=expires_at,
        )
        outcome = payments.ledger.submit_in(conn, [post])[0]
        if outcome.reason is Reason.INSUFFICIENT_FUNDS:
            raise InvalidPayment(
                f"the {req.method.value} cannot cover {req.amount}", code="INSUFFICIENT_BALANCE"
            )
        if not outcome.ok or outcome.entry_id is None:
            raise InvalidPayment(
                f"the {req.method.value} part was refused: {outcome.reason}",
                code="INVALID_PAYMENT_LEG",
            )
        conn.execute(
            payment_legs.insert().values(
                intent_id=intent_id,
                method=req.method.value,
                amount=req.amount.amount,
                account_id=req.account_id,
                hold_entry_id=outcome.entry_id,
                status=LegStatus.HELD.value,
                refunded=0,
            )
        )


def capture(payments: Payments, conn: Connection, intent: records.Intent) -> bool:
    """Take every held part into escrow; False (and every part voided) if one cannot be."""
    held = [leg for leg in of(conn, intent.id, intent.amount.currency) if leg.hold_entry_id]
    for leg in held:
        assert leg.hold_entry_id is not None
        key = f"pay:{intent.id}:{leg.method.value}:capture"
        outcome = payments.ledger.submit_in(conn, [CommitHold(key, leg.hold_entry_id)])[0]
        if not outcome.ok:
            release(payments, conn, intent)
            return False
        _set(conn, leg, LegStatus.CAPTURED)
    return True


def release(payments: Payments, conn: Connection, intent: records.Intent) -> None:
    """Void the parts still held (the channel part failed or closed, or another part did)."""
    for leg in of(conn, intent.id, intent.amount.currency):
        if leg.status is not LegStatus.HELD or leg.hold_entry_id is None:
            continue
        key = f"pay:{intent.id}:{leg.method.value}:void"
        outcome = payments.ledger.submit_in(conn, [VoidHold(key, leg.hold_entry_id)])[0]
        # An expired hold has released its money already: nothing left to void.
        if not outcome.ok and outcome.reason not in (Reason.HOLD_EXPIRED, Reason.HOLD_CLOSED):
            raise LedgerRefused(f"ledger refused {key}: {outcome.reason}", key=key)
        _set(conn, leg, LegStatus.VOIDED)


def add_refunded(conn: Connection, leg: Leg, amount: Money) -> None:
    conn.execute(
        update(payment_legs)
        .where(payment_legs.c.intent_id == leg.intent_id, payment_legs.c.method == leg.method)
        .values(refunded=payment_legs.c.refunded + amount.amount)
    )


def _set(conn: Connection, leg: Leg, status: LegStatus) -> None:
    conn.execute(
        update(payment_legs)
        .where(payment_legs.c.intent_id == leg.intent_id, payment_legs.c.method == leg.method)
        .values(status=status.value)
    )
