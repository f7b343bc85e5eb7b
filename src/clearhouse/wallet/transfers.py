"""Transfers between two buyer balances (P10, rule 8001): posted at once, in one transaction
with the payer's KYC usage, the transfer's row and its outbox event. Idempotent by the
caller's transfer id (unique per merchant): the same request again gets the stored transfer; a
different request under a taken id is refused. A refused transfer leaves nothing behind.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Engine, select
from sqlalchemy.engine import Connection

from clearhouse.accounts.model import LimitKind
from clearhouse.clock import Clock
from clearhouse.db.schema import wallet_transfers
from clearhouse.db.transaction import run_in_transaction
from clearhouse.gateway import customers as scope
from clearhouse.gateway.merchants import active_merchant
from clearhouse.ids import new_id
from clearhouse.ledger import queries
from clearhouse.ledger.model import Reason
from clearhouse.ledger.requests import Post
from clearhouse.ledger.service import Ledger
from clearhouse.money import Money
from clearhouse.outbox.events import emit
from clearhouse.wallet import kyc
from clearhouse.wallet.errors import (
    AccountNotActive,
    DuplicateTransfer,
    InsufficientBalance,
    InvalidMovement,
    SameAccount,
    WalletError,
)

TRANSFER_CODE = "8001"
COMPLETED = "COMPLETED"
MAX_DESCRIPTION = 128


@dataclass(frozen=True, slots=True)
class TransferRequest:
    transfer_ref: str
    payer_account_id: str
    payee_account_id: str
    amount: Money
    description: str = ""

    def digest(self) -> bytes:
        fields = [
            self.transfer_ref,
            self.payer_account_id,
            self.payee_account_id,
            str(self.amount.amount),
            self.amount.currency,
            self.description,
        ]
        return hashlib.sha256("\x1f".join(fields).encode()).digest()


def check_amount(amount: Money) -> None:
    if amount.amount <= 0:
        raise InvalidMovement("amount must be positive", code="INVALID_AMOUNT")


class Transfers:
    def __init__(self, engine: Engine, ledger: Ledger, clock: Clock) -> None:
        self.engine = engine
        self.ledger = ledger
        self.clock = clock

    def create(self, merchant_id: str, req: TransferRequest) -> dict[str, Any]:
        check_amount(req.amount)
        if len(req.description) > MAX_DESCRIPTION:
            raise InvalidMovement(f"description is longer than {MAX_DESCRIPTION} characters")
        return run_in_transaction(
            self.engine, lambda c: self._make(c, merchant_id, req), retry_integrity=True
        )

    def _make(self, conn: Connection, merchant_id: str, req: TransferRequest) -> dict[str, Any]:
        now = self.clock.now()
        active_merchant(conn, merchant_id)
        found = conn.execute(
            select(wallet_transfers).where(
                wallet_transfers.c.merchant_id == merchant_id,
                wallet_transfers.c.transfer_ref == req.transfer_ref,
            )
        ).first()
        if found is not None:
            if bytes(found.request_hash) != req.digest():
                raise DuplicateTransfer(
                    f"transfer {req.transfer_ref!r} was made with other details",
                    transfer_id=found.id,
                )
            return transfer_view(found)
        if req.payer_account_id == req.payee_account_id:
            raise SameAccount("a transfer goes to another account")
        # Both ends must be the merchant's customers: money does not leave a marketplace's
        # buyers for another's, even to an account whose id is known.
        scope.require_account(conn, merchant_id, req.payer_account_id)
        scope.require_account(conn, merchant_id, req.payee_account_id)
        cur = req.amount.currency
        payer, payer_fund = kyc.buyer_balance(conn, req.payer_account_id, cur)
        kyc.buyer_balance(conn, req.payee_account_id, cur)
        # The identity's usage rows are locked before the ledger locks the balances: every
        # movement takes them in that order.
        kyc.reserve(conn, payer, LimitKind.PAYMENT, req.amount, kyc.limit_day(now, self.zone))
        transfer_id = new_id("trf")
        post = Post(
            f"trf:{transfer_id}",
            TRANSFER_CODE,
            cur,
            {"amount": req.amount.amount},
            {"payer": req.payer_account_id, "payee": req.payee_account_id},
            memo=transfer_id,
        )
        outcome = self.ledger.submit_in(conn, [post])[0]
        if outcome.reason is Reason.INSUFFICIENT_FUNDS:
            available = queries.balance(conn, payer_fund).available
            raise InsufficientBalance(
                f"the payer's balance cannot cover {req.amount}", available=available
            )
        if outcome.reason is Reason.ACCOUNT_NOT_ACTIVE:
            raise AccountNotActive("an account of the transfer is not active")
        if not outcome.ok or outcome.entry_id is None:
            raise WalletError(f"ledger refused {outcome.key}: {outcome.reason}")
        conn.execute(
            wallet_transfers.insert().values(
                id=transfer_id,
                merchant_id=merchant_id,
                transfer_ref=req.transfer_ref,
                request_hash=req.digest(),
                payer_account_id=req.payer_account_id,
                payee_account_id=req.payee_account_id,
                amount=req.amount.amount,
                currency=cur,
                description=req.description,
                status=COMPLETED,
                entry_id=outcome.entry_id,
                created_at=now,
            )
        )
        row = conn.execute(select(wallet_transfers).where(wallet_transfers.c.id == transfer_id))
        shown = transfer_view(row.one())
        emit(conn, merchant_id, "transfer.completed", shown, now)
        return shown

    @property
    def zone(self) -> Any:
        return self.ledger.zone


def transfer_view(row: Any) -> dict[str, Any]:
    created: datetime = row.created_at
    return {
        "id": row.id,
        "transfer_id": row.transfer_ref,
        "from_account_id": row.payer_account_id,
        "to_account_id": row.payee_account_id,
        "amount": row.amount,
        "currency": row.currency,
        "description": row.description,
        "status": row.status,
        "entry_id": row.entry_id,
        "created_at": created.isoformat(),
    }
