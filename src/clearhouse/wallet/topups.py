"""Top-ups: a buyer's balance paid into through a channel payment. The payment machinery
(intent, attempt, channel call, notifications, polling) is the gateway's; a top-up is a payment
whose purpose is ``topup``, and this module is the wallet's side of it (``TopupBook`` in
``gateway/payments.py``): checked and counted against the identity's KYC payment limit when
stored, booked with the channel's top-up rule (40xx: channel clearing to the buyer's balance,
no commission) and its fee when paid, its KYC usage given back when it fails or closes. Each
step runs in the payment's own transaction.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy.engine import Connection

from clearhouse.accounts.model import LimitKind
from clearhouse.gateway import records
from clearhouse.gateway.channels.registry import Channels
from clearhouse.gateway.errors import InvalidPayment, LedgerRefused
from clearhouse.gateway.model import CHANNEL_CODES, Settlement
from clearhouse.gateway.payments import TOPUP, PaymentRequest, Payments, view
from clearhouse.ledger.requests import Post
from clearhouse.ledger.service import Ledger
from clearhouse.money import Money
from clearhouse.wallet import kyc

DESCRIPTION = "Balance top-up"


@dataclass(frozen=True, slots=True)
class TopupRequest:
    topup_ref: str  # the caller's id: the payment's merchant order id
    account_id: str  # the buyer's account whose balance is topped up
    amount: Money
    channel: str
    method: str
    expires_at: datetime | None = None
    payer_id: str | None = None
    payer_ref: str | None = None

    def payment(self) -> PaymentRequest:
        return PaymentRequest(
            merchant_order_id=self.topup_ref,
            amount=self.amount,
            description=DESCRIPTION,
            channel=self.channel,
            method=self.method,
            # Nothing to escrow: the money is the payer's own as soon as it arrives.
            settlement=Settlement.INSTANT,
            expires_at=self.expires_at,
            payer_id=self.payer_id,
            payer_ref=self.payer_ref,
            purpose=TOPUP,
            payer_account_id=self.account_id,
        )


class Topups:
    """The wallet's ``TopupBook`` (gateway/payments.py): see the module's docstring."""

    def __init__(self, ledger: Ledger, channels: Channels) -> None:
        self.ledger = ledger
        self.channels = channels

    def accept(self, conn: Connection, req: PaymentRequest, now: datetime) -> None:
        if req.purpose != TOPUP or req.payer_account_id is None:
            raise InvalidPayment("a top-up names the buyer's account; an order does not")
        if req.legs or req.settlement is not Settlement.INSTANT:
            raise InvalidPayment("a top-up is one instant channel payment")
        customer_id, _fund = kyc.buyer_balance(conn, req.payer_account_id, req.amount.currency)
        kyc.reserve(conn, customer_id, LimitKind.PAYMENT, req.amount, kyc.limit_day(now, self.zone))

    @property
    def zone(self) -> ZoneInfo:
        return self.ledger.zone

    def book(
        self, conn: Connection, intent: records.Intent, attempt: records.Attempt, fee: Money
    ) -> None:
        assert intent.payer_account_id is not None
        codes = CHANNEL_CODES[self.channels.books(attempt.channel)]
        cur = intent.amount.currency
        posts = [
            Post(
                f"topup:{intent.id}:paid",
                codes.topup,
                cur,
                {"amount": intent.amount.amount},
                {"buyer": intent.payer_account_id},
                memo=intent.id,
            )
        ]
        if fee.amount > 0:
            posts.append(
                Post(f"topup:{intent.id}:fee", codes.fee, cur, {"fee": fee.amount}, memo=intent.id)
            )
        for outcome in self.ledger.submit_in(conn, posts):
            if not outcome.ok:
                # The channel has the money: never a business answer. The transaction rolls
                # back and the notification is retried (an operator sees the balance's state).
                raise LedgerRefused(
                    f"ledger refused {outcome.key}: {outcome.reason}",
                    key=outcome.key,
                    reason=str(outcome.reason),
                )

    def release(self, conn: Connection, intent: records.Intent) -> None:
        assert intent.payer_account_id is not None
        customer_id = kyc.owner(conn, intent.payer_account_id)
        day = kyc.limit_day(intent.created_at, self.zone)
        kyc.release(conn, customer_id, LimitKind.PAYMENT, intent.amount, day)


def topup_view(payments: Payments, intent: records.Intent) -> dict[str, Any]:
    return view(intent, payments.attempts(intent.id)) | {
        "purpose": intent.purpose,
        "account_id": intent.payer_account_id,
    }
