"""The parts of a mixed payment (P12) besides its channel attempt: the payer's balance and the
platform's subsidy. Each is reserved by a ledger hold when the payment is taken (so the balance
cannot be spent twice meanwhile), captured when the channel part succeeds, voided when it fails.
The channel part goes first because it is the one that may fail (the lower success rate);
the held parts then cannot, unless their hold ran out.

The balance part is a payment from the payer's balance, so it counts against the identity's
KYC payment limit (A1), the kind top-ups and transfers count against: reserved with its hold,
in the same transaction and before it (the wallet's lock order), kept when captured, given
back when voided. The window it was counted in is kept in the payment's flow record (a
``kyc`` row), so the release finds it whenever the payment ends. A refund to the balance does
not give usage back: the payment was made. The channel part is under the channel's and the
issuer's limits, and the subsidy is the platform's money, not the payer's.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import date, datetime
from enum import StrEnum
from typing import TYPE_CHECKING

from sqlalchemy import select, update
from sqlalchemy.engine import Connection

from clearhouse.accounts.model import LimitKind
from clearhouse.db.schema import payment_events, payment_legs
from clearhouse.gateway import records
from clearhouse.gateway.errors import InvalidPayment, LedgerRefused
from clearhouse.ledger.model import Reason
from clearhouse.ledger.requests import CommitHold, Post, VoidHold
from clearhouse.money import Money
from clearhouse.wallet import kyc
from clearhouse.wallet.errors import AccountNotActive, AccountNotFound

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
# A payment from the balance draws on the payment limit, as top-ups and transfers do.
BALANCE_LIMIT = LimitKind.PAYMENT
# The flow-record kind of a balance part's KYC reservation and of its release.
KYC_RECORD = "kyc"


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
    """Reserve each part in the ledger; a balance that cannot cover its part, or a payer over
    a KYC limit, refuses the whole payment (the transaction rolls back: nothing is kept)."""
    # The identity's usage rows are locked before the ledger locks any balance, as every
    # wallet movement does: two orders of locking could deadlock on PostgreSQL.
    for req in requests:
        if req.method is LegMethod.BALANCE:
            _reserve_limit(payments, conn, intent_id, req)
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
        if leg.method is LegMethod.BALANCE:
            # The money never left the balance: it must not use up the payer's limit.
            _release_limit(payments, conn, leg)


def _reserve_limit(payments: Payments, conn: Connection, intent_id: str, req: LegRequest) -> None:
    assert req.account_id is not None
    try:
        customer_id, _fund = kyc.buyer_balance(conn, req.account_id, req.amount.currency)
    except (AccountNotFound, AccountNotActive) as exc:
        # The same code as a balance the ledger refuses; ``reason`` says why.
        raise InvalidPayment(
            f"the balance part cannot be paid: {exc.message}",
            code="INVALID_PAYMENT_LEG",
            reason=exc.code,
        ) from None
    now = payments.clock.now()
    day = kyc.limit_day(now, payments.ledger.zone)
    kyc.reserve(conn, customer_id, BALANCE_LIMIT, req.amount, day)
    counted = {"customer_id": customer_id, "kind": BALANCE_LIMIT.value, "day": day.isoformat()}
    records.record(conn, now, intent_id, KYC_RECORD, json.dumps(counted), status="reserved")


def _release_limit(payments: Payments, conn: Connection, leg: Leg) -> None:
    """Give back the balance part's usage in the window it was counted in. A part held before
    its usage was counted (no ``kyc`` record) has nothing to give back."""
    detail = conn.execute(
        select(payment_events.c.detail)
        .where(
            payment_events.c.intent_id == leg.intent_id,
            payment_events.c.kind == KYC_RECORD,
            payment_events.c.status == "reserved",
        )
        .order_by(payment_events.c.id)
    ).scalar()
    if detail is None:
        return
    counted = json.loads(detail)
    kind, day = LimitKind(counted["kind"]), date.fromisoformat(counted["day"])
    kyc.release(conn, counted["customer_id"], kind, leg.amount, day)
    records.record(conn, payments.clock.now(), leg.intent_id, KYC_RECORD, detail, status="released")


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
